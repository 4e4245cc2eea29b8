"""A tiny read-only FUSE daemon that speaks the protocol itself over the fd it is given.

Run as ``python fakefs.py [options] /dev/fd/N``. It serves a small in-memory tree and numbers
its node ids, file handles and directory cookies from a base that changes on every run
(``--base`` fixes it), so a replay against it only matches if the replayer maps them.

Deliberate misbehaviour for tests: ``--change`` serves different bytes in hello.txt,
``--die-on OPNAME`` kills itself (SIGKILL) on the first request of that opcode,
``--hang-on OPNAME`` never answers requests of that opcode, ``--remove PATH`` serves the
tree without PATH, ``--shuffle`` lists every directory in another order on every run
(``--seed N`` fixes the order), ``--retrieve`` sends a RETRIEVE notification after the first
OPEN, ``--fork`` serves from a background child.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import socket
import stat
import sys
import time

from fusetrace.protocol.abi import InitFlag, NotifyCode, Opcode
from fusetrace.protocol.decode import decode_request
from fusetrace.protocol.encode import encode_notify, encode_reply
from fusetrace.protocol.session import Negotiated

ENOENT, ENOTDIR, ENOSYS, EINVAL, ENODATA = 2, 20, 38, 22, 61

BIG = bytes((i * 7 + i // 251) & 0xFF for i in range(200_000))


def tree(change: bool) -> dict[str, tuple[int, bytes]]:
    """path -> (mode, content or link target); directories have empty content."""
    hello = b"hello world\n" if not change else b"hello World\n"
    return {
        "": (stat.S_IFDIR | 0o755, b""),
        "hello.txt": (stat.S_IFREG | 0o644, hello),
        "big.bin": (stat.S_IFREG | 0o644, BIG),
        "sub": (stat.S_IFDIR | 0o755, b""),
        "sub/note.txt": (stat.S_IFREG | 0o600, b"a note\n" * 20),
        "sub/link": (stat.S_IFLNK | 0o777, b"../hello.txt"),
    }


class FakeFs:
    def __init__(self, fd: int, args: argparse.Namespace) -> None:
        self.sock = socket.socket(fileno=fd)
        self.args = args
        base = args.base if args.base is not None else random.randrange(1, 1 << 40)
        self.files = tree(args.change)
        for name in args.remove:
            del self.files[name]
        self.paths = sorted(self.files)
        # node ids: root is 1, the others base-dependent
        self.ids = {p: (1 if p == "" else base * 16 + 2 + i * 3) for i, p in enumerate(self.paths)}
        self.by_id = {v: k for k, v in self.ids.items()}
        self.next_fh = base * 8 + 5
        self.generation = base + 1  # (as unlikely as the base to repeat between runs)
        self.cookie_base = base * 4 + 100
        self.handles: dict[int, str] = {}
        self.neg = Negotiated.default()
        self.opened = False
        self.orders: dict[str, list[str]] = {}
        self.rng = random.Random(args.seed)

    def attr(self, path: str) -> dict[str, object]:
        mode, content = self.files[path]
        return {
            "ino": self.ids[path] + 1000,
            "size": len(content),
            "blocks": (len(content) + 511) // 512,
            "atime": random.randrange(1 << 30),
            "mtime": 1_700_000_000,
            "ctime": 1_700_000_000,
            "mode": mode,
            "nlink": 2 if stat.S_ISDIR(mode) else 1,
            "uid": 0,
            "gid": 0,
            "blksize": 4096,
        }

    def entry(self, path: str) -> dict[str, object]:
        return {
            "nodeid": self.ids[path],
            "generation": self.generation,
            "entry_valid": 1,
            "attr_valid": 1,
            "attr": self.attr(path),
        }

    def children(self, path: str) -> list[str]:
        prefix = path + "/" if path else ""
        return [
            p
            for p in self.paths
            if p.startswith(prefix) and p != path and "/" not in p[len(prefix) :]
        ]

    def dirents(self, path: str, plus: bool) -> list[dict[str, object]]:
        out: list[dict[str, object]] = []
        names = [".", ".."] + [c.rsplit("/", 1)[-1] for c in self.children(path)]
        if self.args.shuffle:
            # another order on every run, the same all through one run (as cryfs does)
            names = self.orders.setdefault(path, self.rng.sample(names, len(names)))
        for i, name in enumerate(names):
            child = path if name in (".", "..") else (f"{path}/{name}" if path else name)
            mode = self.files[child][0]
            rec: dict[str, object] = {
                "ino": self.ids[child] + 1000,
                "off": self.cookie_base + i + 1,
                "type": stat.S_IFMT(mode) >> 12,
                "name": name,
            }
            if plus:
                if name in (".", ".."):
                    rec.update({"nodeid": 0, "attr": {}})
                else:
                    rec.update(self.entry(child))
            out.append(rec)
        return out

    def reply(
        self, opcode: int, unique: int, body: dict[str, object] | None = None, error: int = 0
    ) -> None:
        self.sock.send(encode_reply(opcode, body, unique=unique, error=error, negotiated=self.neg))

    def serve(self) -> None:
        while True:
            data = self.sock.recv(4 << 20)
            if not data:
                return
            req = decode_request(data, self.neg)
            op, u, node = req.opcode, req.unique, req.nodeid
            name = Opcode(op).name if op in Opcode._value2member_map_ else str(op)
            if self.args.die_on == name:
                os.kill(os.getpid(), signal.SIGKILL)
            if self.args.hang_on == name:
                continue
            if op in (Opcode.FORGET, Opcode.BATCH_FORGET, Opcode.NOTIFY_REPLY):
                continue
            if op == Opcode.INTERRUPT:
                continue
            self.handle(op, u, node, req.body)

    def handle(self, op: int, u: int, node: int, b: dict[str, object]) -> None:
        path = self.by_id.get(node)
        if op == Opcode.INIT:
            self.neg = self.neg.with_init_request(b)
            offered = int(b["flags"])  # type: ignore[call-overload]
            want = int(InitFlag.ASYNC_READ | InitFlag.DO_READDIRPLUS | InitFlag.MAX_PAGES)
            out = {
                "major": 7,
                "minor": 31,
                "max_readahead": b["max_readahead"],
                "flags": offered & want,
                "max_write": 131072,
                "max_pages": 32,
                "max_background": 16,
                "congestion_threshold": 12,
                "time_gran": 1,
            }
            self.neg = self.neg.with_init_reply(out)
            self.reply(op, u, out)
            return
        if op == Opcode.DESTROY:
            self.reply(op, u)
            return
        if path is None:
            self.reply(op, u, error=-ENOENT)
            return
        mode, content = self.files[path]
        if op == Opcode.LOOKUP:
            if not stat.S_ISDIR(mode):
                self.reply(op, u, error=-ENOTDIR)
                return
            child = f"{path}/{b['name']}" if path else str(b["name"])
            if child not in self.files:
                self.reply(op, u, error=-ENOENT)
                return
            self.reply(op, u, self.entry(child))
        elif op == Opcode.GETATTR:
            self.reply(op, u, {"attr_valid": 1, "attr": self.attr(path)})
        elif op in (Opcode.OPEN, Opcode.OPENDIR):
            fh = self.next_fh
            self.next_fh += 3
            self.handles[fh] = path
            self.reply(op, u, {"fh": fh})
            if op == Opcode.OPEN and self.args.retrieve and not self.opened:
                self.opened = True
                self.sock.send(
                    encode_notify(
                        NotifyCode.RETRIEVE,
                        {"notify_unique": 77, "nodeid": node, "offset": 0, "size": 4096},
                        negotiated=self.neg,
                    )
                )
        elif op in (Opcode.READ, Opcode.READDIR, Opcode.READDIRPLUS):
            fh = int(b["fh"])  # type: ignore[call-overload]
            if self.handles.get(fh) != path:
                self.reply(op, u, error=-EINVAL)
                return
            off, size = int(b["offset"]), int(b["size"])  # type: ignore[call-overload]
            if op == Opcode.READ:
                self.reply(op, u, {"data": content[off : off + size]})
                return
            entries = self.dirents(path, op == Opcode.READDIRPLUS)
            start = 0 if off == 0 else off - self.cookie_base
            # at most three entries per reply, so listings take several calls
            self.reply(op, u, {"entries": entries[start : start + 3]})
        elif op in (Opcode.RELEASE, Opcode.RELEASEDIR):
            self.handles.pop(int(b["fh"]), None)  # type: ignore[call-overload]
            self.reply(op, u)
        elif op == Opcode.READLINK:
            self.reply(op, u, {"target": content.decode()})
        elif op == Opcode.STATFS:
            self.reply(
                op,
                u,
                {
                    "st": {
                        "blocks": 1 << 30,
                        # drawn from a range wide enough never to repeat in a test run's
                        # replays (50 values made one replay in 50 match by chance)
                        "bfree": random.randrange(1 << 30),
                        "bavail": 10,
                        "files": 6,
                        "ffree": 0,
                        "bsize": 4096,
                        "namelen": 255,
                        "frsize": 4096,
                    }
                },
            )
        elif op == Opcode.GETXATTR:
            self.reply(op, u, error=-ENODATA)
        elif op in (Opcode.FLUSH, Opcode.ACCESS):
            self.reply(op, u)
        else:
            self.reply(op, u, error=-ENOSYS)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--base", type=int)
    p.add_argument("--change", action="store_true")
    p.add_argument("--shuffle", action="store_true")
    p.add_argument("--remove", action="append", default=[], metavar="PATH")
    p.add_argument("--seed", type=int, help="the --shuffle order (default: another each run)")
    p.add_argument("--die-on")
    p.add_argument("--hang-on")
    p.add_argument("--retrieve", action="store_true")
    p.add_argument("--fork", action="store_true")
    p.add_argument("device")
    args = p.parse_args()
    if not args.device.startswith("/dev/fd/"):
        sys.exit("fakefs: expects /dev/fd/N")
    if args.fork:
        # go to the background as libfuse daemons do without -f: the parent exits 0, the
        # child serves (after a pause, so the parent's exit is seen first)
        if os.fork():
            os._exit(0)
        time.sleep(0.5)
    FakeFs(int(args.device.rsplit("/", 1)[1]), args).serve()


if __name__ == "__main__":
    main()
