"""pcapng reading and writing for FUSE captures (design.md §4). Pure: file objects only.

Layout written:

* one Section Header Block in host byte order, with ``shb_userappl``, ``shb_os``,
  ``shb_hardware`` and an ``opt_comment`` holding the capture metadata as one JSON object;
* one Interface Description Block per /dev/fuse channel: link type 147 (LINKTYPE_USER0),
  ``if_tsresol`` 9 (nanoseconds), ``if_name`` "fuse", ``if_description`` the mountpoint;
* one Enhanced Packet Block per frame, the raw frame as packet data, the direction in
  ``epb_flags`` (inbound = kernel → daemon), on a daemon → kernel frame the kernel's answer
  to its write (:data:`EPB_RESULT`, a local-use option) and, when the proxy changed the
  frame, an ``opt_comment`` saying what it changed.

The reader streams; it accepts any pcapng (either byte order, several sections, other
timestamp resolutions, Simple and obsolete Packet Blocks) and classic pcap with link type
147, and stops cleanly at a block cut short, reporting where.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from fusetrace.errors import CaptureError
from fusetrace.frame import Direction, Frame

LINKTYPE_FUSE = 147  # LINKTYPE_USER0
CAPTURE_FORMAT = 1  # the "fusetrace_capture" value in the metadata

_SHB = 0x0A0D0D0A
_IDB = 0x00000001
_OPB = 0x00000002  # obsolete Packet Block
_SPB = 0x00000003
#: Frame built without its Python-level __new__ (a million per large capture)
_new_record = tuple.__new__
#: the direction in epb_flags bits 0-1
_DIRECTIONS = (None, Direction.INBOUND, Direction.OUTBOUND, None)
_EPB = 0x00000006
_BOM = 0x1A2B3C4D

_OPT_END = 0
_OPT_COMMENT = 1
_SHB_HARDWARE = 2
_SHB_OS = 3
_SHB_USERAPPL = 4
_IF_NAME = 2
_IF_DESCRIPTION = 3
_IF_TSRESOL = 9
_EPB_FLAGS = 2
#: local-use option code (pcapng reserves 0x8000-0xFFFF for local use; readers that do not
#: know it skip it) on an outbound Enhanced Packet Block: the kernel's answer when the
#: recorder wrote the frame to /dev/fuse, a 32-bit unsigned number in the section's byte
#: order, 0 when the kernel took the frame, else the positive errno of the refused write.
#: (0x8F17 is the writer's padding option.)
EPB_RESULT = 0x8F18
#: local-use option code that pads an Enhanced Packet Block (:meth:`BlockEncoder.padded`):
#: the recorder grows the block before a large frame so that the frame's data starts on an
#: alignment boundary of the file, to be written from its receive buffer with direct I/O
PAD_OPTION = 0x8F17

_PCAP_MAGICS = {
    b"\xd4\xc3\xb2\xa1": ("<", 1_000),  # microseconds, little endian
    b"\xa1\xb2\xc3\xd4": (">", 1_000),
    b"\x4d\x3c\xb2\xa1": ("<", 1),  # nanoseconds
    b"\xa1\xb2\x3c\x4d": (">", 1),
}

_READ_CHUNK = 1 << 20
_MAX_BLOCK = 256 << 20  # larger than any FUSE frame; a bigger length means corruption


def _pad4(n: int) -> int:
    return (4 - n % 4) % 4


#: padding after packet data, by length
_ZEROS = tuple(b"\0" * n for n in range(4))


def _option(code: int, value: bytes, order: str) -> bytes:
    return struct.pack(order + "HH", code, len(value)) + value + b"\0" * _pad4(len(value))


def _options(items: list[tuple[int, bytes]], order: str) -> bytes:
    if not items:
        return b""
    return b"".join(_option(c, v, order) for c, v in items) + struct.pack(order + "HH", 0, 0)


def _block(block_type: int, body: bytes, order: str) -> bytes:
    total = 12 + len(body)
    return struct.pack(order + "II", block_type, total) + body + struct.pack(order + "I", total)


@dataclass(frozen=True)
class Channel:
    """One /dev/fuse file descriptor, written as a pcapng interface."""

    description: str = ""
    name: str = "fuse"


class BlockEncoder:
    """pcapng blocks as bytes, sans I/O: the section header, interface descriptions and
    Enhanced Packet Blocks of one section, in its byte order and with its snap length.

    :meth:`packet` gives a block as parts to write one after the other (``os.writev``
    takes them as they are: the packet data is never copied); :meth:`padded` makes such a
    block longer by a padding option, from the parts' lengths alone, for a writer that
    wants the next block to start on an alignment boundary. :attr:`frames` counts the
    packet blocks encoded.
    """

    def __init__(self, byte_order: str = "little", snaplen: int | None = None) -> None:
        self._order = o = "<" if byte_order == "little" else ">"
        self.byte_order = byte_order
        self.snaplen = snaplen
        self.frames = 0
        self._epb_head = struct.Struct(o + "IIIIIII")
        self._flags_opt = {
            d: struct.pack(o + "HHI", _EPB_FLAGS, 4, int(d))
            for d in (Direction.INBOUND, Direction.OUTBOUND)
        }
        self._end_opt = struct.pack(o + "HH", 0, 0)
        self._result_opt = struct.Struct(o + "HHI")
        self._accepted = self._result_opt.pack(EPB_RESULT, 4, 0)
        self._tail = struct.Struct(o + "I")
        self._opt_head = struct.Struct(o + "HH")

    @property
    def order(self) -> str:
        """The struct byte-order prefix of the section ("<" or ">")."""
        return self._order

    def section(
        self,
        meta: dict[str, Any],
        *,
        userappl: str = "fusetrace",
        os_name: str = "",
        hardware: str = "",
    ) -> bytes:
        """The Section Header Block: the capture metadata (``meta``, with the format
        version and byte order added) as a JSON comment, and who wrote it."""
        o = self._order
        meta = {"fusetrace_capture": CAPTURE_FORMAT, "byte_order": self.byte_order, **meta}
        opts: list[tuple[int, bytes]] = [(_OPT_COMMENT, json.dumps(meta).encode())]
        if hardware:
            opts.append((_SHB_HARDWARE, hardware.encode()))
        if os_name:
            opts.append((_SHB_OS, os_name.encode()))
        opts.append((_SHB_USERAPPL, userappl.encode()))
        body = struct.pack(o + "IHHq", _BOM, 1, 0, -1) + _options(opts, o)
        return _block(_SHB, body, o)

    def interface(self, channel: Channel) -> bytes:
        """An Interface Description Block for one /dev/fuse channel."""
        o = self._order
        opts = [(_IF_NAME, channel.name.encode()), (_IF_TSRESOL, b"\x09")]
        if channel.description:
            opts.insert(1, (_IF_DESCRIPTION, channel.description.encode()))
        body = struct.pack(o + "HHI", LINKTYPE_FUSE, 0, self.snaplen or 0) + _options(opts, o)
        return _block(_IDB, body, o)

    def packet(
        self,
        direction: Direction,
        t_ns: int,
        data: bytes | memoryview,
        *,
        channel: int = 0,
        comment: str | None = None,
        orig_len: int | None = None,
        result: int | None = None,
    ) -> tuple[bytes, bytes | memoryview, bytes]:
        """One frame's Enhanced Packet Block as three parts to be written in order: the
        block header, the packet data (``data`` itself, or a slice of it with a snap length:
        never copied) and the trailer (padding to 4 bytes, options, total length): the
        direction in ``epb_flags``, ``result`` (0 or a positive errno; None: unknown) as
        the :data:`EPB_RESULT` option, ``comment`` as ``opt_comment``. Counts the frame."""
        if orig_len is None:
            orig_len = len(data)
        if self.snaplen is not None and len(data) > self.snaplen:
            data = data[: self.snaplen]
        cap = len(data)
        pad = _pad4(cap)
        opts = self._flags_opt[direction]
        if result is not None:
            opts += self._accepted if not result else self._result_opt.pack(EPB_RESULT, 4, result)
        if comment:
            opts = opts + _option(_OPT_COMMENT, comment.encode(), self._order)
        total = 28 + cap + pad + len(opts) + 4 + 4
        head = self._epb_head.pack(
            _EPB, total, channel, (t_ns >> 32) & 0xFFFFFFFF, t_ns & 0xFFFFFFFF, cap, orig_len
        )
        tail = b"".join((_ZEROS[pad], opts, self._end_opt, self._tail.pack(total)))
        self.frames += 1
        return head, data, tail

    def padded(
        self, block: tuple[bytes | memoryview, ...], pad: int
    ) -> tuple[bytes | memoryview, ...]:
        """``block``, an Enhanced Packet Block as :meth:`packet` lays it out (its three
        parts, or joined in one), made ``pad`` bytes longer (a multiple of 4, at least 4):
        a :data:`PAD_OPTION` before its end of options, and the new length in its header
        and trailer. The packet data is not copied."""
        if pad < 4 or pad % 4:
            raise ValueError(f"a block grows by a multiple of 4 bytes, at least 4, not {pad}")
        grown = sum(map(len, block)) + pad
        if len(block) == 1:  # joined: header, the rest, end of options and length
            whole = block[0]
            head, middle, end = whole[:8], whole[8:-8], whole[-8:]
            parts: tuple[bytes | memoryview, ...] = (middle,)
        else:
            head, *rest, end = block
            parts = tuple(rest)
        option = self._opt_head.pack(PAD_OPTION, pad - 4) + bytes(pad - 4)
        return (
            bytes(head[:4]) + self._tail.pack(grown) + bytes(head[8:]),
            *parts,
            bytes(end[:-8]) + option + self._end_opt + self._tail.pack(grown),
        )

    def last_block(self, run: bytes | memoryview) -> int:
        """Where the last block of ``run`` (whole blocks, one after the other, as another
        encoder of this layout made them: the compiled core) starts, read from its
        trailing length: pcapng repeats every block's length at its end for this."""
        (total,) = self._tail.unpack_from(run, len(run) - 4)
        return len(run) - total


class CaptureWriter(BlockEncoder):
    """Appends FUSE frames to a pcapng stream: a :class:`BlockEncoder` with a file object.

    The section header and the interface descriptions are written at once. Each frame
    becomes exactly one ``write()`` of one whole block on ``fileobj`` (:meth:`write`), so
    an unbuffered file holds every frame written so far even if the process is killed;
    with a buffered file, ``flush()`` decides what is safe. :meth:`block` gives the block
    for the caller to write (:meth:`BlockEncoder.packet`).
    """

    def __init__(
        self,
        fileobj: BinaryIO,
        meta: dict[str, Any],
        *,
        channels: list[Channel] | None = None,
        snaplen: int | None = None,
        userappl: str = "fusetrace",
        os_name: str = "",
        hardware: str = "",
        byte_order: str = "little",
    ) -> None:
        super().__init__(byte_order, snaplen)
        self._f = fileobj
        self._f.write(self.section(meta, userappl=userappl, os_name=os_name, hardware=hardware))
        self._channels = 0
        for ch in channels or [Channel()]:
            self.add_channel(ch)

    def add_channel(self, channel: Channel) -> int:
        """Write an Interface Description Block; returns the new channel number."""
        self._f.write(self.interface(channel))
        self._channels += 1
        return self._channels - 1

    #: one frame's Enhanced Packet Block as parts, counted (see :meth:`BlockEncoder.packet`)
    block = BlockEncoder.packet

    def write(
        self,
        direction: Direction,
        t_ns: int,
        data: bytes | memoryview,
        *,
        channel: int = 0,
        comment: str | None = None,
        orig_len: int | None = None,
        result: int | None = None,
    ) -> None:
        """Append one frame as an Enhanced Packet Block, in one ``write()``."""
        parts = self.packet(
            direction,
            t_ns,
            data,
            channel=channel,
            comment=comment,
            orig_len=orig_len,
            result=result,
        )
        self._f.write(b"".join(parts))

    def flush(self) -> None:
        self._f.flush()


@dataclass
class Interface:
    linktype: int
    snaplen: int
    name: str = ""
    description: str = ""
    ts_num: int = 1000  # multiply raw timestamps by ts_num / ts_den to get nanoseconds
    ts_den: int = 1


@dataclass
class CaptureInfo:
    """What the reader learned about the capture besides its frames."""

    meta: dict[str, Any] = field(default_factory=dict)
    byte_order: str = "little"
    userappl: str = ""
    os: str = ""
    hardware: str = ""
    interfaces: list[Interface] = field(default_factory=list)
    #: True when the file ends inside a block; ``truncated_at`` is that block's offset.
    truncated: bool = False
    truncated_at: int | None = None
    #: frames on interfaces whose link type is not FUSE, skipped
    skipped: int = 0
    format: str = "pcapng"


def guess_direction(data: bytes, order: str) -> Direction:
    """Direction of a frame written by a tool that did not record it.

    A reply or notification has ``error`` (0, a negative errno, or a small notify code with
    ``unique`` 0) where a request has its opcode, and a request never has ``unique`` 0.
    """
    if len(data) < 16:
        return Direction.OUTBOUND
    second, unique = struct.unpack_from(order + "IQ", data, 4)
    if second == 0 or second >= 0x80000000 or unique == 0 or len(data) < 40:
        return Direction.OUTBOUND
    return Direction.INBOUND


class CaptureReader:
    """Streams the frames of a pcapng (or classic pcap) FUSE capture from a file object.

    ``info`` is filled in as the file is read: the section header (and so the metadata) is
    read on construction; ``truncated`` is known once iteration ends.
    """

    def __init__(self, fileobj: BinaryIO) -> None:
        self._f = fileobj
        self._buf = b""
        self._pos = 0  # position of _buf[0] in the file
        self._off = 0  # read offset inside _buf
        self._eof = False
        self.info = CaptureInfo()
        self._order = "<"
        self._index = 0
        self._pending: Frame | None = None
        magic = self._peek(4)
        if not magic:
            raise CaptureError("empty file: not a capture")
        if magic in _PCAP_MAGICS:
            self.info.format = "pcap"
            self._iter: Iterator[Frame] = self._read_pcap()
            return
        if len(magic) < 4 or struct.unpack("<I", magic)[0] != _SHB:
            raise CaptureError(
                "not a pcapng capture (bad magic)",
                hint="fusetrace reads the .pcapng files that `fusetrace record -w` writes",
            )
        self._read_shb_first()
        self._iter = self._read_pcapng()

    # ---- buffered access -------------------------------------------------------------
    def _fill(self, n: int) -> bool:
        """Make sure n bytes are available from the read offset; False at end of file."""
        while len(self._buf) - self._off < n:
            if self._eof:
                return False
            chunk = self._f.read(max(_READ_CHUNK, n))
            if not chunk:
                self._eof = True
                return False
            self._pos += self._off
            self._buf = self._buf[self._off :] + chunk
            self._off = 0
        return True

    def _peek(self, n: int) -> bytes:
        self._fill(n)
        return self._buf[self._off : self._off + n]

    def _take(self, n: int) -> bytes | None:
        if not self._fill(n):
            return None
        b = self._buf[self._off : self._off + n]
        self._off += n
        return b

    @property
    def _offset(self) -> int:
        return self._pos + self._off

    def _cut(self, offset: int) -> None:
        self.info.truncated = True
        self.info.truncated_at = offset

    # ---- pcapng ------------------------------------------------------------------------
    def _read_shb_first(self) -> None:
        head = self._peek(12)
        if len(head) < 12:
            raise CaptureError("truncated capture: the section header is cut short")
        bom = head[8:12]
        if bom == b"\x4d\x3c\x2b\x1a":
            self._order = "<"
        elif bom == b"\x1a\x2b\x3c\x4d":
            self._order = ">"
        else:
            raise CaptureError("not a pcapng capture (bad byte-order magic)")
        start = self._offset
        (total,) = struct.unpack(self._order + "I", head[4:8])
        body = self._take(total) if 28 <= total <= _MAX_BLOCK else None
        if body is None:
            raise CaptureError(
                f"truncated or corrupt capture: bad section header at offset {start}"
            )
        self._parse_shb(body)

    def _parse_options(self, data: bytes, start: int) -> Iterator[tuple[int, bytes]]:
        o = self._order
        pos = start
        while pos + 4 <= len(data):
            code, length = struct.unpack_from(o + "HH", data, pos)
            pos += 4
            if code == _OPT_END:
                return
            yield code, data[pos : pos + length]
            pos += length + _pad4(length)

    def _parse_shb(self, block: bytes) -> None:
        bom = block[8:12]
        self._order = "<" if bom == b"\x4d\x3c\x2b\x1a" else ">"
        self.info.byte_order = "little" if self._order == "<" else "big"
        self.info.interfaces = []  # interface ids restart in every section
        major = struct.unpack_from(self._order + "H", block, 12)[0]
        if major != 1:
            raise CaptureError(f"unsupported pcapng version {major}")
        for code, value in self._parse_options(block[:-4], 24):
            text = value.decode("utf-8", "replace")
            if code == _OPT_COMMENT:
                try:
                    meta = json.loads(text)
                except ValueError:
                    continue
                if isinstance(meta, dict) and "fusetrace_capture" in meta:
                    self.info.meta = meta
            elif code == _SHB_HARDWARE:
                self.info.hardware = text
            elif code == _SHB_OS:
                self.info.os = text
            elif code == _SHB_USERAPPL:
                self.info.userappl = text
        bo = self.info.meta.get("byte_order")
        if bo in ("little", "big"):
            self.info.byte_order = bo

    def _parse_idb(self, block: bytes) -> None:
        o = self._order
        linktype, _, snaplen = struct.unpack_from(o + "HHI", block, 8)
        iface = Interface(linktype=linktype, snaplen=snaplen)
        for code, value in self._parse_options(block[:-4], 16):
            if code == _IF_NAME:
                iface.name = value.decode("utf-8", "replace")
            elif code == _IF_DESCRIPTION:
                iface.description = value.decode("utf-8", "replace")
            elif code == _IF_TSRESOL and value:
                r = value[0]
                if r & 0x80:
                    iface.ts_num, iface.ts_den = 1_000_000_000, 1 << (r & 0x7F)
                else:
                    exp = r & 0x7F
                    if exp <= 9:
                        iface.ts_num, iface.ts_den = 10 ** (9 - exp), 1
                    else:
                        iface.ts_num, iface.ts_den = 1, 10 ** (exp - 9)
        self.info.interfaces.append(iface)

    def _read_pcapng(self) -> Iterator[Frame]:
        """The block loop. Enhanced Packet Blocks are parsed in place in the read buffer (the
        hot path: one unpack for the fixed part, one for the option layout our writer
        produces and the trailing length, interfaces looked up in a table made anew after
        each other block); other blocks are copied out and parsed at leisure."""
        order = ""
        epb = u32 = head = opt1 = opt2 = struct.Struct("<I")
        #: the options our writer produces and the block's trailing length, in one unpack:
        #: epb_flags, end of options (12 bytes); epb_flags, EPB_RESULT, end (20 bytes)
        flags_tail = flags_result_tail = u32.unpack_from
        flags_word = result_word = 0
        direction: Direction | None
        directions = (None, Direction.INBOUND, Direction.OUTBOUND, None)
        new = _new_record
        frame_type = Frame
        #: per interface id: None (not FUSE) or (ts_num, ts_den, needs scaling)
        scales = self._scales()
        index = self._index
        while True:
            buf, pos = self._buf, self._off
            avail = len(buf) - pos
            if avail < 12:
                if self._fill(12):
                    continue
                if avail:
                    self._cut(self._offset)
                self._index = index
                self._check_fuse()
                return
            if self._order != order:
                order = self._order
                epb = struct.Struct(order + "IIIIIII")
                head = struct.Struct(order + "II")
                u32 = struct.Struct(order + "I")
                opt1 = struct.Struct(order + "II")
                opt2 = struct.Struct(order + "IIII")
                flags_word = u32.unpack(struct.pack(order + "HH", _EPB_FLAGS, 4))[0]
                result_word = u32.unpack(struct.pack(order + "HH", EPB_RESULT, 4))[0]
                flags_tail = struct.Struct(order + "II4xI").unpack_from
                flags_result_tail = struct.Struct(order + "IIII4xI").unpack_from
            if avail >= 28:
                # The hot path, a whole Enhanced Packet Block of a FUSE interface with the
                # options our writer produces: one unpack for its fixed part, one for its
                # options and trailing length, where the general path below takes four.
                # Anything else (another block, other options, a block cut short or
                # damaged) goes on to that path, which reads it again.
                btype, total, iface_id, ts_hi, ts_lo, caplen, origlen = epb.unpack_from(buf, pos)
                if (
                    btype == _EPB
                    and total <= avail
                    and not total & 3
                    and total <= _MAX_BLOCK
                    and iface_id < len(scales)
                ):
                    data_end = pos + 28 + caplen
                    opts = data_end + (-caplen & 3)
                    left = pos + total - 4 - opts
                    if left == 12:
                        word, flags, check = flags_tail(buf, opts)
                        result = None
                        whole = word == flags_word and check == total
                    elif left == 20:
                        word, flags, word2, result, check = flags_result_tail(buf, opts)
                        whole = word == flags_word and word2 == result_word and check == total
                    else:
                        whole = False
                    if whole:
                        self._off = pos + total
                        scale = scales[iface_id]
                        if scale is None:
                            self.info.skipped += 1
                            continue
                        data = buf[pos + 28 : data_end]
                        direction = directions[flags & 3]
                        if direction is None:
                            direction = guess_direction(data, self._bo())
                        ts = (ts_hi << 32) | ts_lo
                        if scale[2]:
                            ts = ts * scale[0] // scale[1]
                        yield new(
                            frame_type,
                            (index, ts, direction, data, origlen, iface_id, None, result),
                        )
                        index += 1
                        continue
            btype, total = head.unpack_from(buf, pos)
            if btype == _SHB:  # its type reads alike in both byte orders
                # a section header: its byte-order magic decides how to read its lengths
                bom = "<" if buf[pos + 8 : pos + 12] == b"\x4d\x3c\x2b\x1a" else ">"
                if bom != order:
                    self._order = bom
                    continue
            if total < 12 or total % 4 or total > _MAX_BLOCK:
                start = self._pos + pos
                raise CaptureError(f"corrupt capture: bad block length {total} at offset {start}")
            if avail < total:
                if self._fill(total):
                    continue
                self._cut(self._pos + pos)
                self._index = index
                self._check_fuse()
                return
            tail = pos + total - 4
            if u32.unpack_from(buf, tail)[0] != total:
                start = self._pos + pos
                raise CaptureError(f"corrupt capture: block at offset {start} is damaged")
            self._off = pos + total
            if btype != _EPB:
                self._index = index
                self._other_block(btype, buf[pos : pos + total], self._pos + pos)
                index = self._index
                scales = self._scales()
                if btype in (_SPB, _OPB) and self._pending is not None:
                    yield self._pending
                    self._pending = None
                continue
            _, _, iface_id, ts_hi, ts_lo, caplen, origlen = epb.unpack_from(buf, pos)
            try:
                scale = scales[iface_id]
            except IndexError:
                self._interface(iface_id, self._pos + pos)  # raises the corrupt-capture error
                raise
            if scale is None:
                self.info.skipped += 1
                continue
            data_end = pos + 28 + caplen
            if data_end > tail:
                start = self._pos + pos
                raise CaptureError(f"corrupt capture: packet at offset {start} overruns its block")
            data = buf[pos + 28 : data_end]
            opts = data_end + (-caplen & 3)
            direction = None
            comment = None
            result = None
            left = tail - opts
            if left == 12:
                word, flags = opt1.unpack_from(buf, opts)
                if word == flags_word:
                    direction = directions[flags & 3]
                else:
                    direction, comment, result = self._options(buf[opts:tail], u32)
            elif left == 20:
                word, flags, word2, result = opt2.unpack_from(buf, opts)
                if word == flags_word and word2 == result_word:
                    direction = directions[flags & 3]
                else:
                    direction, comment, result = self._options(buf[opts:tail], u32)
            elif left > 0:
                direction, comment, result = self._options(buf[opts:tail], u32)
            if direction is None:
                direction = guess_direction(data, self._bo())
            ts = (ts_hi << 32) | ts_lo
            if scale[2]:
                ts = ts * scale[0] // scale[1]
            # tuple.__new__ directly: Frame's own __new__ is a Python function (hot path)
            yield new(frame_type, (index, ts, direction, data, origlen, iface_id, comment, result))
            index += 1

    def _scales(self) -> list[tuple[int, int, bool] | None]:
        """Per interface id: None when its link type is not FUSE, else (ts_num, ts_den,
        whether raw timestamps need scaling to nanoseconds)."""
        return [
            (i.ts_num, i.ts_den, i.ts_num != i.ts_den) if i.linktype == LINKTYPE_FUSE else None
            for i in self.info.interfaces
        ]

    def _options(
        self, raw: bytes, u32: struct.Struct
    ) -> tuple[Direction | None, str | None, int | None]:
        """(direction, comment, result) from an Enhanced Packet Block's options."""
        direction = comment = result = None
        for code, value in self._parse_options(raw, 0):
            if code == _EPB_FLAGS and len(value) >= 4:
                direction = _DIRECTIONS[u32.unpack_from(value)[0] & 3]
            elif code == _OPT_COMMENT:
                comment = value.decode("utf-8", "replace")
            elif code == EPB_RESULT and len(value) >= 4:
                result = u32.unpack_from(value)[0]
        return direction, comment, result

    def _other_block(self, btype: int, block: bytes, start: int) -> None:
        """Section and interface headers, Simple and obsolete Packet Blocks; blocks of other
        kinds (name resolution, statistics, ...) carry nothing for us. A packet found here is
        left in ``_pending`` for the loop to yield."""
        order = self._order
        if btype == _SPB:
            iface = self._interface(0, start)
            if iface.linktype != LINKTYPE_FUSE:
                self.info.skipped += 1
                return
            (origlen,) = struct.unpack_from(order + "I", block, 8)
            cap = min(origlen, iface.snaplen or origlen, len(block) - 16)
            data = block[12 : 12 + cap]
            direction = guess_direction(data, self._bo())
            self._pending = Frame(self._index, 0, direction, data, origlen, 0, None)
            self._index += 1
        elif btype == _OPB:
            iface_id, _drops, ts_hi, ts_lo, caplen, origlen = struct.unpack_from(
                order + "HHIIII", block, 8
            )
            iface = self._interface(iface_id, start)
            if iface.linktype != LINKTYPE_FUSE:
                self.info.skipped += 1
                return
            data = block[28 : 28 + caplen]
            ts = (ts_hi << 32) | ts_lo
            self._pending = Frame(
                self._index,
                ts * iface.ts_num // iface.ts_den,
                guess_direction(data, self._bo()),
                data,
                origlen,
                iface_id,
                None,
            )
            self._index += 1
        elif btype == _IDB:
            self._parse_idb(block)
        elif btype == _SHB:
            self._parse_shb(block)

    def _bo(self) -> str:
        return "<" if self.info.byte_order == "little" else ">"

    def _interface(self, iface_id: int, offset: int) -> Interface:
        try:
            return self.info.interfaces[iface_id]
        except IndexError:
            raise CaptureError(
                f"corrupt capture: packet at offset {offset} names interface {iface_id}, "
                "which was never described"
            ) from None

    # ---- classic pcap -----------------------------------------------------------------
    def _read_pcap(self) -> Iterator[Frame]:
        head = self._take(24)
        if head is None:
            raise CaptureError("truncated capture: the pcap file header is cut short")
        order, ts_mult = _PCAP_MAGICS[head[:4]]
        self._order = order
        self.info.byte_order = "little" if order == "<" else "big"
        _maj, _min, _tz, _sig, snaplen, linktype = struct.unpack_from(order + "HHiIII", head, 4)
        linktype &= 0x0FFFFFFF
        self.info.interfaces = [Interface(linktype=linktype, snaplen=snaplen)]
        if linktype != LINKTYPE_FUSE:
            raise CaptureError(
                f"not a FUSE capture: link type {linktype}, expected {LINKTYPE_FUSE} (USER0)"
            )
        rec = struct.Struct(order + "IIII")
        while True:
            start = self._offset
            h = self._take(16)
            if h is None:
                if len(self._buf) - self._off:
                    self._cut(start)
                return
            sec, frac, caplen, origlen = rec.unpack(h)
            if caplen > _MAX_BLOCK:
                raise CaptureError(f"corrupt capture: bad record length at offset {start}")
            data = self._take(caplen)
            if data is None:
                self._cut(start)
                return
            yield Frame(
                self._index,
                sec * 1_000_000_000 + frac * ts_mult,
                guess_direction(data, order),
                data,
                origlen,
                0,
                None,
            )
            self._index += 1

    def __iter__(self) -> Iterator[Frame]:
        # the block loop itself (no generator in between: one resume a frame)
        return self._iter

    def _check_fuse(self) -> None:
        """At the end of a pcapng capture: one without a FUSE interface is not ours."""
        no_fuse = not any(i.linktype == LINKTYPE_FUSE for i in self.info.interfaces)
        if no_fuse and self._index == 0 and self.info.interfaces:
            kinds = ", ".join(str(i.linktype) for i in self.info.interfaces)
            raise CaptureError(
                f"not a FUSE capture: link type {kinds}, expected {LINKTYPE_FUSE} (USER0)"
            )
