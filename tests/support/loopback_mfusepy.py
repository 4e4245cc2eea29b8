"""An mfusepy loopback filesystem for tests (libfuse high-level API, paths).

Usage: FUSE_LIBRARY_NAME=fuse3 loopback_mfusepy.py ROOT MOUNTPOINT   (MOUNTPOINT may be /dev/fd/N)
"""

from __future__ import annotations

import errno
import os
import sys
import threading

import mfusepy
from mfusepy import FUSE, FuseOSError, Operations


class Loopback(Operations):
    use_ns = True

    def __init__(self, root: str) -> None:
        self.root = os.path.realpath(root)
        self.rwlock = threading.Lock()

    def _full(self, path: str) -> str:
        return self.root + path

    def access(self, path, amode):
        if not os.access(self._full(path), amode):
            raise FuseOSError(errno.EACCES)
        return 0

    def chmod(self, path, mode):
        return os.chmod(self._full(path), mode)

    def chown(self, path, uid, gid):
        return os.chown(self._full(path), uid, gid)

    def create(self, path, mode, fi=None):
        return os.open(self._full(path), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)

    def flush(self, path, fh):
        return 0

    def fsync(self, path, datasync, fh):
        return os.fdatasync(fh) if datasync else os.fsync(fh)

    def getattr(self, path, fh=None):
        try:
            st = os.lstat(self._full(path))
        except OSError as e:
            raise FuseOSError(e.errno) from None
        keys = (
            "st_atime",
            "st_ctime",
            "st_gid",
            "st_mode",
            "st_mtime",
            "st_nlink",
            "st_size",
            "st_uid",
            "st_ino",
        )
        out = {k: getattr(st, k) for k in keys}
        for k in ("st_atime", "st_ctime", "st_mtime"):
            out[k] = getattr(st, k + "_ns")
        return out

    def link(self, target, source):
        return os.link(self._full(source), self._full(target))

    def mkdir(self, path, mode):
        return os.mkdir(self._full(path), mode)

    def mknod(self, path, mode, dev):
        return os.mknod(self._full(path), mode, dev)

    def open(self, path, flags):
        return os.open(self._full(path), flags)

    def read(self, path, size, offset, fh):
        return os.pread(fh, size, offset)

    def readdir(self, path, fh):
        return [".", "..", *os.listdir(self._full(path))]

    def readlink(self, path):
        return os.readlink(self._full(path))

    def release(self, path, fh):
        return os.close(fh)

    def rename(self, old, new):
        return os.rename(self._full(old), self._full(new))

    def rmdir(self, path):
        return os.rmdir(self._full(path))

    def statfs(self, path):
        stv = os.statvfs(self._full(path))
        keys = (
            "f_bavail",
            "f_bfree",
            "f_blocks",
            "f_bsize",
            "f_favail",
            "f_ffree",
            "f_files",
            "f_flag",
            "f_frsize",
            "f_namemax",
        )
        return {k: getattr(stv, k) for k in keys}

    def symlink(self, target, source):
        return os.symlink(source, self._full(target))

    def truncate(self, path, length, fh=None):
        with open(self._full(path), "r+") as f:
            f.truncate(length)

    def unlink(self, path):
        return os.unlink(self._full(path))

    def utimens(self, path, times=None):
        return os.utime(self._full(path), ns=times) if times else os.utime(self._full(path))

    def write(self, path, data, offset, fh):
        return os.pwrite(fh, data, offset)


def main() -> None:
    root, mountpoint = sys.argv[1], sys.argv[2]
    try:
        FUSE(Loopback(root), mountpoint, foreground=True)
    except RuntimeError:
        # the filesystem went away under us (the normal end behind fusetrace)
        sys.exit(1)


if __name__ == "__main__":
    assert mfusepy
    main()
