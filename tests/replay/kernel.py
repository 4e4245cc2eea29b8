"""A scripted stand-in for the kernel, used to make recordings for the replay tests.

It starts a daemon on a SOCK_SEQPACKET socket (as /dev/fd/N), sends requests built with the
protocol encoders, reads the replies, and writes every frame to a pcapng capture exactly as
``fusetrace record`` would. It is deliberately independent of the replay engine, so a
recording made with it is not shaped by the code under test.
"""

from __future__ import annotations

import io
import socket
import subprocess
import sys
import time
from typing import Any

from fusetrace.capture import CaptureWriter
from fusetrace.frame import Direction
from fusetrace.protocol.abi import InitFlag, Opcode
from fusetrace.protocol.decode import decode_reply
from fusetrace.protocol.encode import encode_request
from fusetrace.protocol.session import Negotiated

FAKEFS = __file__.rsplit("/", 1)[0] + "/fakefs.py"
MOUNTPOINT = "/mnt/recorded"

OFFERED = int(
    InitFlag.ASYNC_READ | InitFlag.POSIX_LOCKS | InitFlag.DO_READDIRPLUS
    | InitFlag.READDIRPLUS_AUTO | InitFlag.MAX_PAGES | InitFlag.INIT_EXT
)  # fmt: skip


class Kernel:
    """Plays the kernel against one daemon; ``capture()`` gives the recording's bytes."""

    def __init__(self, argv: list[str]) -> None:
        self.ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        for s in (self.ours, theirs):
            for opt in (socket.SO_SNDBUF, socket.SO_RCVBUF):
                s.setsockopt(socket.SOL_SOCKET, opt, 4 << 20)
        argv = [a.replace("{}", f"/dev/fd/{theirs.fileno()}") for a in argv]
        self.proc = subprocess.Popen(argv, pass_fds=[theirs.fileno()])
        theirs.close()
        self.out = io.BytesIO()
        self.writer = CaptureWriter(
            self.out, {"daemon": argv, "mountpoint": MOUNTPOINT}, byte_order=sys.byteorder
        )
        self.unique = 0
        self.neg = Negotiated.default()
        self.pending: dict[int, tuple[int, dict[str, Any]]] = {}

    # ---- frames

    def _log(self, direction: Direction, data: bytes) -> None:
        self.writer.write(direction, time.time_ns(), data)

    def send(
        self,
        opcode: int,
        body: dict[str, Any] | None = None,
        nodeid: int = 0,
        unique: int | None = None,
    ) -> int:
        if unique is None:
            self.unique += 2
            unique = self.unique
        frame = encode_request(
            opcode,
            body,
            unique=unique,
            nodeid=nodeid,
            uid=1000,
            gid=1000,
            pid=42,
            negotiated=self.neg,
        )
        self.ours.send(frame)
        self._log(Direction.INBOUND, frame)
        self.pending[unique] = (opcode, body or {})
        return unique

    def recv(self) -> tuple[int, int, dict[str, Any], bytes]:
        """(unique, error, body, raw) of the next frame from the daemon."""
        raw = self.ours.recv(8 << 20)
        self._log(Direction.OUTBOUND, raw)
        unique = int.from_bytes(raw[8:16], sys.byteorder)
        if unique == 0:
            return 0, 0, {}, raw
        opcode, body = self.pending.pop(unique, (None, {}))
        d = decode_reply(raw, opcode, self.neg, request_body=body)
        return unique, d.error or 0, d.body, raw

    def call(
        self, opcode: int, body: dict[str, Any] | None = None, nodeid: int = 0
    ) -> tuple[int, dict[str, Any]]:
        u = self.send(opcode, body, nodeid)
        while True:
            ru, err, b, _ = self.recv()
            if ru == u:
                return err, b

    # ---- operations

    def init(self) -> None:
        body = {
            "major": 7,
            "minor": 45,
            "max_readahead": 131072,
            "flags": OFFERED & 0xFFFFFFFF,
            "flags2": OFFERED >> 32,
        }
        self.neg = self.neg.with_init_request(body)
        err, out = self.call(Opcode.INIT, body)
        assert err == 0, err
        self.neg = self.neg.with_init_reply(out)

    def lookup(self, parent: int, name: str) -> int:
        err, b = self.call(Opcode.LOOKUP, {"name": name}, parent)
        return 0 if err else int(b["nodeid"])

    def open(self, nodeid: int, opcode: int = Opcode.OPEN) -> int:
        err, b = self.call(opcode, {"flags": 0}, nodeid)
        assert err == 0, err
        return int(b["fh"])

    def listdir(self, nodeid: int, plus: bool = False) -> list[str]:
        fh = self.open(nodeid, Opcode.OPENDIR)
        names: list[str] = []
        off = 0
        op = Opcode.READDIRPLUS if plus else Opcode.READDIR
        while True:
            err, b = self.call(op, {"fh": fh, "offset": off, "size": 4096}, nodeid)
            entries = b.get("entries", [])
            if err or not entries:
                break
            names += [e["name"] for e in entries]
            off = entries[-1]["off"]
        self.call(Opcode.RELEASEDIR, {"fh": fh}, nodeid)
        return names

    def forget(self, nodeid: int, n: int = 1) -> None:
        self.send(Opcode.FORGET, {"nlookup": n}, nodeid)

    def capture(self) -> bytes:
        self.ours.close()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        return self.out.getvalue()


def record_fakefs_session(path: str, extra: list[str] | None = None) -> None:
    """A varied session against fakefs, written to ``path``: lookups, stats, reads,
    listings (plain and plus), a readlink, forgets, and a burst of concurrent reads."""
    k = Kernel([sys.executable, FAKEFS, *(extra or []), "{}"])
    k.init()
    hello = k.lookup(1, "hello.txt")
    k.call(Opcode.GETATTR, {}, hello)
    fh = k.open(hello)
    k.call(Opcode.READ, {"fh": fh, "offset": 0, "size": 4096}, hello)
    k.call(Opcode.FLUSH, {"fh": fh}, hello)
    k.call(Opcode.RELEASE, {"fh": fh}, hello)
    k.lookup(1, "missing")
    sub = k.lookup(1, "sub")
    k.listdir(1)
    k.listdir(sub, plus=True)
    link = k.lookup(sub, "link")
    k.call(Opcode.READLINK, {}, link)
    big = k.lookup(1, "big.bin")
    bfh = k.open(big)
    # four reads outstanding together, answered in order
    us = [
        k.send(Opcode.READ, {"fh": bfh, "offset": i * 65536, "size": 65536}, big) for i in range(4)
    ]
    for _ in us:
        k.recv()
    k.call(Opcode.RELEASE, {"fh": bfh}, big)
    k.call(Opcode.STATFS, {}, 1)
    k.call(Opcode.GETXATTR, {"size": 0, "name": "user.x"}, hello)
    k.forget(link)
    k.forget(hello, 1)
    k.send(
        Opcode.BATCH_FORGET,
        {"forgets": [{"nodeid": big, "nlookup": 1}, {"nodeid": sub, "nlookup": 1}]},
    )
    # a lookup after the forgets: the daemon may hand out the same id again
    k.lookup(1, "hello.txt")
    with open(path, "wb") as f:
        f.write(k.capture())
