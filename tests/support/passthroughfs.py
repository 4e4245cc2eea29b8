"""A pyfuse3 passthrough filesystem for tests: mirrors SOURCE at MOUNTPOINT.

Usage: passthroughfs.py SOURCE MOUNTPOINT   (MOUNTPOINT may be /dev/fd/N)

Follows the shape of pyfuse3's documented passthrough example: inodes are the backing
files' inode numbers, paths are remembered per inode while the kernel holds lookups.
"""

from __future__ import annotations

import errno
import os
import sys
from collections import defaultdict
from os import fsdecode, fsencode

import pyfuse3
import trio
from pyfuse3 import FUSEError


class Passthrough(pyfuse3.Operations):
    def __init__(self, source: str) -> None:
        super().__init__()
        self._paths: dict[int, set[str] | str] = {pyfuse3.ROOT_INODE: source}
        self._lookups: dict[int, int] = defaultdict(int)
        self._fd_inode: dict[int, int] = {}
        self._inode_fd: dict[int, int] = {}
        self._fd_opens: dict[int, int] = {}

    # ---- inode ↔ path ---------------------------------------------------------------
    def _path(self, inode: int) -> str:
        try:
            val = self._paths[inode]
        except KeyError:
            raise FUSEError(errno.ENOENT) from None
        return next(iter(val)) if isinstance(val, set) else val

    def _add_path(self, inode: int, path: str) -> None:
        self._lookups[inode] += 1
        val = self._paths.get(inode)
        if val is None:
            self._paths[inode] = path
        elif isinstance(val, set):
            val.add(path)
        elif val != path:
            self._paths[inode] = {val, path}

    def _forget_path(self, inode: int, path: str) -> None:
        val = self._paths.get(inode)
        if isinstance(val, set):
            val.discard(path)
            if len(val) == 1:
                self._paths[inode] = next(iter(val))
        else:
            self._paths.pop(inode, None)

    def _attr(self, path: str | None = None, fd: int | None = None) -> pyfuse3.EntryAttributes:
        try:
            st = os.fstat(fd) if fd is not None else os.lstat(path)  # type: ignore[arg-type]
        except OSError as e:
            raise FUSEError(e.errno) from None
        entry = pyfuse3.EntryAttributes()
        for name in (
            "st_ino",
            "st_mode",
            "st_nlink",
            "st_uid",
            "st_gid",
            "st_rdev",
            "st_size",
            "st_atime_ns",
            "st_mtime_ns",
            "st_ctime_ns",
        ):
            setattr(entry, name, getattr(st, name))
        entry.generation = 0
        entry.entry_timeout = 0
        entry.attr_timeout = 0
        entry.st_blksize = 512
        entry.st_blocks = (entry.st_size + 511) // 512
        return entry

    # ---- operations -----------------------------------------------------------------
    async def lookup(self, parent, name, ctx=None):
        name = fsdecode(name)
        path = os.path.join(self._path(parent), name)
        attr = self._attr(path=path)
        if name not in (".", ".."):
            self._add_path(attr.st_ino, path)
        return attr

    async def forget(self, inode_list):
        for inode, nlookup in inode_list:
            if self._lookups[inode] > nlookup:
                self._lookups[inode] -= nlookup
                continue
            self._lookups.pop(inode, None)
            if inode not in self._inode_fd:
                self._paths.pop(inode, None)

    async def getattr(self, inode, ctx=None):
        if inode in self._inode_fd:
            return self._attr(fd=self._inode_fd[inode])
        return self._attr(path=self._path(inode))

    async def readlink(self, inode, ctx):
        try:
            return fsencode(os.readlink(self._path(inode)))
        except OSError as e:
            raise FUSEError(e.errno) from None

    async def opendir(self, inode, ctx):
        return inode

    async def readdir(self, inode, off, token):
        path = self._path(inode)
        entries = []
        for name in os.listdir(path):
            attr = self._attr(path=os.path.join(path, name))
            entries.append((attr.st_ino, name, attr))
        for ino, name, attr in sorted(entries):
            if ino <= off:
                continue
            if not pyfuse3.readdir_reply(token, fsencode(name), attr, ino):
                break
            self._add_path(attr.st_ino, os.path.join(path, name))

    async def unlink(self, parent, name, ctx):
        path = os.path.join(self._path(parent), fsdecode(name))
        try:
            inode = os.lstat(path).st_ino
            os.unlink(path)
        except OSError as e:
            raise FUSEError(e.errno) from None
        if inode in self._lookups:
            self._forget_path(inode, path)

    async def rmdir(self, parent, name, ctx):
        path = os.path.join(self._path(parent), fsdecode(name))
        try:
            inode = os.lstat(path).st_ino
            os.rmdir(path)
        except OSError as e:
            raise FUSEError(e.errno) from None
        if inode in self._lookups:
            self._forget_path(inode, path)

    async def rename(self, parent_old, name_old, parent_new, name_new, flags, ctx):
        if flags != 0:
            raise FUSEError(errno.EINVAL)
        old = os.path.join(self._path(parent_old), fsdecode(name_old))
        new = os.path.join(self._path(parent_new), fsdecode(name_new))
        try:
            os.rename(old, new)
            inode = os.lstat(new).st_ino
        except OSError as e:
            raise FUSEError(e.errno) from None
        if inode in self._lookups:
            val = self._paths.get(inode)
            if isinstance(val, set):
                val.discard(old)
                val.add(new)
            else:
                self._paths[inode] = new

    async def mkdir(self, parent, name, mode, ctx):
        path = os.path.join(self._path(parent), fsdecode(name))
        try:
            os.mkdir(path, mode=(mode & ~ctx.umask))
            os.chown(path, ctx.uid, ctx.gid)
        except OSError as e:
            raise FUSEError(e.errno) from None
        attr = self._attr(path=path)
        self._add_path(attr.st_ino, path)
        return attr

    async def setattr(self, inode, attr, fields, fh, ctx):
        try:
            target = fh if fh is not None else self._path(inode)
            if fields.update_size:
                os.truncate(target, attr.st_size)
            if fields.update_mode:
                os.chmod(target, stat_mode(attr.st_mode))
            if fields.update_uid or fields.update_gid:
                os.chown(
                    target,
                    attr.st_uid if fields.update_uid else -1,
                    attr.st_gid if fields.update_gid else -1,
                )
            if fields.update_atime or fields.update_mtime:
                st = os.stat(target)
                atime = attr.st_atime_ns if fields.update_atime else st.st_atime_ns
                mtime = attr.st_mtime_ns if fields.update_mtime else st.st_mtime_ns
                os.utime(target, None, ns=(atime, mtime))
        except OSError as e:
            raise FUSEError(e.errno) from None
        return await self.getattr(inode)

    async def statfs(self, ctx):
        st = os.statvfs(self._path(pyfuse3.ROOT_INODE))
        out = pyfuse3.StatvfsData()
        for name in (
            "f_bsize",
            "f_frsize",
            "f_blocks",
            "f_bfree",
            "f_bavail",
            "f_files",
            "f_ffree",
            "f_favail",
        ):
            setattr(out, name, getattr(st, name))
        out.f_namemax = st.f_namemax
        return out

    async def open(self, inode, flags, ctx):
        if inode in self._inode_fd:
            fd = self._inode_fd[inode]
            self._fd_opens[fd] += 1
            return pyfuse3.FileInfo(fh=fd)
        try:
            fd = os.open(self._path(inode), flags & ~os.O_CREAT)
        except OSError as e:
            raise FUSEError(e.errno) from None
        self._inode_fd[inode] = fd
        self._fd_inode[fd] = inode
        self._fd_opens[fd] = 1
        return pyfuse3.FileInfo(fh=fd)

    async def create(self, parent, name, mode, flags, ctx):
        path = os.path.join(self._path(parent), fsdecode(name))
        try:
            fd = os.open(path, flags | os.O_CREAT | os.O_TRUNC)
        except OSError as e:
            raise FUSEError(e.errno) from None
        attr = self._attr(fd=fd)
        self._add_path(attr.st_ino, path)
        self._inode_fd[attr.st_ino] = fd
        self._fd_inode[fd] = attr.st_ino
        self._fd_opens[fd] = 1
        return (pyfuse3.FileInfo(fh=fd), attr)

    async def read(self, fd, offset, length):
        return os.pread(fd, length, offset)

    async def write(self, fd, offset, buf):
        return os.pwrite(fd, buf, offset)

    async def release(self, fd):
        if self._fd_opens[fd] > 1:
            self._fd_opens[fd] -= 1
            return
        del self._fd_opens[fd]
        inode = self._fd_inode.pop(fd)
        del self._inode_fd[inode]
        try:
            os.close(fd)
        except OSError as e:
            raise FUSEError(e.errno) from None


def stat_mode(mode: int) -> int:
    return mode & 0o7777


def main() -> None:
    source, mountpoint = sys.argv[1], sys.argv[2]
    ops = Passthrough(source)
    options = set(pyfuse3.default_options)
    options.add("fsname=passthroughfs")
    pyfuse3.init(ops, mountpoint, options)
    try:
        trio.run(pyfuse3.main)
    except BaseException:
        pyfuse3.close(unmount=False)
        raise
    pyfuse3.close(unmount=False)


if __name__ == "__main__":
    main()
