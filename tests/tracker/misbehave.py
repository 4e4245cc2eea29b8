"""A FUSE daemon that breaks the protocol on purpose, speaking to /dev/fuse directly.

It mounts a file system itself (mount(2) with ``fd=N``), answers the kernel from one thread,
and, for certain names, writes a faulty reply first and records what the kernel's write()
said (the errno) before sending a proper reply so the caller is not left waiting. Every
frame read or written is kept as a :class:`~fusetrace.frame.Frame` in crossing order, so
the tracker can be fed exactly what a recorder between the two would have seen.

Faults, by name looked up (``FAULTS``) or created with mkdir (``MKDIR_FAULTS``); notification
faults are sent right after INIT.
"""

from __future__ import annotations

import ctypes
import errno
import os
import struct
import threading
from dataclasses import dataclass, field
from pathlib import Path

from fusetrace.frame import Direction, Frame
from fusetrace.protocol.abi import S_IFDIR, S_IFREG, InitFlag, Opcode
from fusetrace.protocol.encode import encode_reply
from fusetrace.protocol.header import parse_in_header

OUT = struct.Struct("<IiQ")
ENOENT = -errno.ENOENT
ROOT_ATTR = {"ino": 1, "mode": S_IFDIR | 0o755, "nlink": 2, "blksize": 4096}

#: looked-up name -> (rule the fault breaks, what the daemon writes first)
FAULTS = {
    "unknown-unique": "FT101",
    "duplicate": "FT102",
    "positive-error": "FT305",
    "error-with-body": "FT306",
    "header-only-entry": "FT307",
    "bad-out-len": "FT302",
    "forget-me": "FT106",
}
#: mkdir name -> rule
MKDIR_FAULTS = {"root-id": "FT204", "wrong-type": "FT205"}
#: notifications sent after INIT -> rule
NOTIFY_FAULTS = {"unknown-code": "FT501", "short-poll": "FT502", "never-looked-up": "FT508"}


@dataclass
class Fault:
    """One deliberate violation: the frame that shows it and the kernel's answer."""

    rule: str
    frame: int
    #: errno of the daemon's write() (0 = accepted)
    write_errno: int


@dataclass
class Misbehaving:
    mountpoint: Path
    records: list[Frame] = field(default_factory=list)
    faults: dict[str, Fault] = field(default_factory=dict)
    forget_seen: threading.Event = field(default_factory=threading.Event)
    errors: list[BaseException] = field(default_factory=list)
    #: faults not to commit (by name)
    skip: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        self.fd = -1
        self.thread: threading.Thread | None = None
        self.conn: int | None = None
        self._lock = threading.Lock()
        self._forget_name_node = 9

    # ---- mount ------------------------------------------------------------------------
    def mount(self) -> None:
        self.fd = os.open("/dev/fuse", os.O_RDWR | os.O_CLOEXEC)
        libc = ctypes.CDLL(None, use_errno=True)
        opts = f"fd={self.fd},rootmode=40000,user_id=0,group_id=0".encode()
        src, target = b"fusetrace-misbehave", str(self.mountpoint).encode()
        if libc.mount(src, target, b"fuse.misbehave", 0, opts) != 0:
            e = ctypes.get_errno()
            os.close(self.fd)
            raise OSError(e, f"mount: {os.strerror(e)}")
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def connection(self) -> int | None:
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            parts = line.split()
            if parts[4] == str(self.mountpoint):
                return int(parts[2].split(":")[1])
        return None

    def unmount(self, *, abort: bool = False) -> None:
        conn = self.connection()
        if abort and conn is not None:
            try:
                Path(f"/sys/fs/fuse/connections/{conn}/abort").write_text("1")
            except OSError:
                pass
        libc = ctypes.CDLL(None, use_errno=True)
        libc.umount2(str(self.mountpoint).encode(), 2)  # MNT_DETACH
        if conn is not None:
            try:
                Path(f"/sys/fs/fuse/connections/{conn}/abort").write_text("1")
            except OSError:
                pass
        if self.thread is not None:
            self.thread.join(10)
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    # ---- frames -------------------------------------------------------------------------
    def _record(self, direction: Direction, data: bytes) -> int:
        with self._lock:
            i = len(self.records)
            self.records.append(Frame(i, i * 1000, direction, data, len(data)))
            return i

    def write(self, data: bytes) -> tuple[int, int]:
        """Write one message; returns (frame index, errno or 0)."""
        i = self._record(Direction.OUTBOUND, data)
        try:
            os.write(self.fd, data)
        except OSError as e:
            return i, e.errno or -1
        return i, 0

    def fault(self, key: str, rule: str, data: bytes) -> None:
        i, err = self.write(data)
        self.faults[key] = Fault(rule, i, err)

    # ---- serving ----------------------------------------------------------------------
    def _serve(self) -> None:
        while True:
            try:
                data = os.read(self.fd, 1 << 17)
            except OSError as e:
                if e.errno in (errno.ENODEV, errno.ECONNABORTED, errno.EBADF, errno.ECONNRESET):
                    return
                if e.errno == errno.EINTR:
                    continue
                self.errors.append(e)
                return
            if not data:  # the socket end handed over by `fusetrace record` was closed
                return
            self._record(Direction.INBOUND, data)
            try:
                self._handle(data)
            except BaseException as e:  # a bug in the test daemon: keep it for the test
                self.errors.append(e)
                return

    def _reply(self, opcode: int, unique: int, body: dict | None = None, error: int = 0) -> None:
        self.write(encode_reply(opcode, body, unique=unique, error=error))

    def _handle(self, data: bytes) -> None:
        h = parse_in_header(data)
        op, u = h.opcode, h.unique
        body = data[40:]
        if op == Opcode.INIT:
            init = {"major": 7, "minor": 45, "max_write": 65536, "max_readahead": 65536}
            self._reply(op, u, {**init, "flags": int(InitFlag.ASYNC_READ)})
            # notification faults, now that the connection is initialised
            self.fault("unknown-code", "FT501", OUT.pack(16, 77, 0))
            self.fault("short-poll", "FT502", OUT.pack(20, 1, 0) + bytes(4))
            # a node id the kernel never heard of (a daemon-side bookkeeping bug)
            inval = struct.pack("<Qqq", 12345, 0, 0)
            self.fault("never-looked-up", "FT508", OUT.pack(16 + len(inval), 2, 0) + inval)
        elif op == Opcode.LOOKUP:
            self._lookup(u, body.split(b"\0", 1)[0].decode())
        elif op == Opcode.GETATTR:
            if h.nodeid == 1:
                self._reply(op, u, {"attr_valid": 0, "attr": ROOT_ATTR})
            else:
                self._reply(op, u, {"attr": {"ino": h.nodeid, "mode": S_IFREG | 0o644,
                                             "nlink": 1}})  # fmt: skip
        elif op == Opcode.MKDIR:
            name = body[8:].split(b"\0", 1)[0].decode()
            rule = MKDIR_FAULTS.get(name)
            if name == "root-id":
                entry = {"nodeid": 1, "attr": {"ino": 1, "mode": S_IFDIR | 0o755, "nlink": 2}}
            else:
                entry = {"nodeid": 7, "attr": {"ino": 7, "mode": S_IFREG | 0o644, "nlink": 1}}
            assert rule is not None
            self.fault(name, rule, encode_reply(Opcode.MKDIR, entry, unique=u))
        elif op in (Opcode.FORGET, Opcode.BATCH_FORGET):
            if "forget-me" not in self.faults:
                self.fault("forget-me", "FT106", OUT.pack(16, ENOENT, u))
            self.forget_seen.set()
        elif op == Opcode.INTERRUPT:
            pass  # optional reply
        else:
            self._reply(op, u, error=-errno.ENOSYS)

    def _lookup(self, u: int, name: str) -> None:
        neg = ENOENT
        if name in self.skip:
            self._reply(Opcode.LOOKUP, u, error=neg)
            return
        if name == "unknown-unique":
            self.fault(name, "FT101", OUT.pack(16, neg, u + 0x100000))
        elif name == "duplicate":
            self._reply(Opcode.LOOKUP, u, error=neg)
            self.fault(name, "FT102", OUT.pack(16, neg, u))
            return
        elif name == "positive-error":
            self.fault(name, "FT305", OUT.pack(16, 5, u))
        elif name == "error-with-body":
            self.fault(name, "FT306", OUT.pack(24, neg, u) + bytes(8))
            return  # the kernel completed the request (with EIO)
        elif name == "header-only-entry":
            self.fault(name, "FT307", OUT.pack(16, 0, u))
            return
        elif name == "bad-out-len":
            self.fault(name, "FT302", OUT.pack(24, neg, u))
        elif name == "forget-me":
            entry = {"nodeid": self._forget_name_node, "generation": 1,
                     "attr": {"ino": 9, "mode": S_IFREG | 0o644, "nlink": 1}}  # fmt: skip
            self._reply(Opcode.LOOKUP, u, entry)
            return
        self._reply(Opcode.LOOKUP, u, error=neg)


def main(argv: list[str]) -> int:
    """Run behind ``fusetrace record``: ``misbehave.py /dev/fd/N REPORT.json [SKIP,...]``.

    Serves the socket end it was given until it is closed, then writes the faults it
    committed (rule and the exact bytes written, hex) to REPORT.json.
    """
    import json

    device, report = argv[0], argv[1]
    skip = frozenset(argv[2].split(",")) if len(argv) > 2 else frozenset()
    fs = Misbehaving(Path("."), skip=skip)
    fs.fd = int(device.rsplit("/", 1)[1])
    fs._serve()
    outbound = {r.index: r.data for r in fs.records}
    doc = {key: {"rule": f.rule, "data": outbound[f.frame].hex()} for key, f in fs.faults.items()}
    Path(report).write_text(json.dumps({"faults": doc, "errors": [repr(e) for e in fs.errors]}))
    return 0


if __name__ == "__main__":
    import sys

    raise SystemExit(main(sys.argv[1:]))
