"""Rendering decoded frames: one summary line, every field (-v), JSON Lines, statistics.

Plain strings only (no rich per line): ``fusetrace decode`` writes to pipes at hundreds of
thousands of lines per second. rich appears only in :meth:`Stats.render_rich`, for the table on
a terminal.
"""

from __future__ import annotations

import json
from _json import make_encoder as c_make_encoder
from array import array
from collections.abc import Callable, Iterator
from json.encoder import encode_basestring_ascii
from operator import itemgetter
from typing import Any

from fusetrace.frame import Direction
from fusetrace.protocol.abi import (
    FILE_TYPE_NAMES,
    S_IFMT,
    FattrFlag,
    FopenFlag,
    InitFlag,
    NotifyCode,
    Opcode,
    flag_names,
)
from fusetrace.protocol.abi import errno_name as abi_errno_name
from fusetrace.protocol.decode import Decoded
from fusetrace.protocol.header import InHeader, OutHeader
from fusetrace.protocol.stream import DecodedFrame
from fusetrace.report.units import latency

_O = Opcode


def errno_name(error: int) -> str:
    """``-2`` -> ``-ENOENT``; unknown numbers stay numeric (names: protocol.abi.errno_name)."""
    if error < 0:
        name = abi_errno_name(-error)
        if not name.isdigit():
            return f"-{name}"
    return str(error)


def init_flags(body: dict[str, Any]) -> InitFlag:
    """The 64-bit INIT flag set of an init_in/init_out body (flags2 only with INIT_EXT)."""
    flags = body.get("flags", 0)
    if flags & InitFlag.INIT_EXT:
        return InitFlag.from_words(flags, body.get("flags2", 0))
    return InitFlag.from_words(flags)


#: memo of the texts below, by value: a capture holds few distinct modes and open flags
_MEMO_MAX = 4096
_MODE_TEXT: dict[int, str] = {}
_OPEN_FLAGS_TEXT: dict[int, str] = {}
#: a request's " nodeid=N" (empty for node 0), by node id
_NODE_TEXT: dict[int, str] = {}
#: a reply's " (LATENCY)", by latency: :func:`latency` shows whole microseconds from 10 µs
#: to 10 ms, so there by the microsecond (a list: a capture's latencies spread over that
#: range); elsewhere by the nanosecond (below 10 µs it shows a tenth of a microsecond)
_LATENCY_US: list[str | None] = [None] * 10_000
_LATENCY_NS: dict[int, str] = {}


def _memo(table: dict[Any, str], key: Any, text: str) -> str:
    """``text``, kept in ``table`` under ``key`` while the table holds fewer than
    :data:`_MEMO_MAX` texts (a capture repeats them; memory stays flat). The callers look
    up first, inline: this is their miss."""
    if len(table) < _MEMO_MAX:
        table[key] = text
    return text


def _mode(mode: int) -> str:
    text = _MODE_TEXT.get(mode)
    if text is None:
        kind = FILE_TYPE_NAMES.get(mode & S_IFMT) or f"type{(mode & S_IFMT) >> 12}"
        text = _memo(_MODE_TEXT, mode, f"{kind} {mode & 0o7777:04o}")
    return text


_quote = json.encoder.encode_basestring


def _q(text: str) -> str:
    """A name in double quotes, JSON-escaped; bytes that were not UTF-8 show as \\xNN."""
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raw = text.encode("utf-8", "surrogateescape")
            text = raw.decode("utf-8", "backslashreplace")
    result: str = _quote(text)
    return result


class _Pick:
    """The text of a body made of a few numeric fields: their dotted paths (``attr.mode``)
    and a function of the tuple of their values. It reads them from a decoded body
    (missing fields are 0) or, for a body left unbuilt (``Decoded.lazy``), straight from
    the frame's bytes. Texts made from a frame's bytes are kept by value (:attr:`texts`,
    bounded): a capture repeats them (a file's attributes, its handle, the sizes asked)."""

    __slots__ = ("_items", "getters", "paths", "text", "texts")

    def __init__(self, paths: tuple[str, ...], text: Callable[[tuple[Any, ...]], str]) -> None:
        self.paths = paths
        self.text = text
        #: Decoded.lazy -> its reader of these fields
        self.getters: dict[Any, Callable[[bytes], tuple[Any, ...]]] = {}
        #: values -> their text, for bodies left unbuilt (see :meth:`remember`)
        self.texts: dict[tuple[Any, ...], str] = {}
        #: top-level fields of a built body, in one call
        self._items: Any = None
        if all("." not in p for p in paths):
            items = itemgetter(*paths)
            self._items = items if len(paths) > 1 else (lambda b: (items(b),))

    def unbuilt(self, d: Decoded, data: bytes) -> str:
        """The text from the frame's bytes, for a body left unbuilt (``d.lazy``)."""
        get = d.lazy.picker(self.paths)  # type: ignore[union-attr]
        if get is None:  # not a struct with these fields
            return self(d.body)
        self.getters[d.lazy] = get
        return self.remember(get(data))

    def remember(self, values: tuple[Any, ...]) -> str:
        """The text of these values, kept in :attr:`texts` (while it holds few)."""
        return _memo(self.texts, values, self.text(values))

    def __call__(self, b: dict[str, Any]) -> str:
        items = self._items
        if items is not None:
            try:
                v = items(b)
            except KeyError:
                v = None
            if v is not None:
                return self.text(v)
        values = []
        for path in self.paths:
            *outer, last = path.split(".")
            d = b
            for key in outer:
                d = d.get(key) or {}
            values.append(d.get(last, 0))
        return self.text(tuple(values))


def _pick(*paths: str) -> Callable[[Callable[[tuple[Any, ...]], str]], _Pick]:
    return lambda text: _Pick(paths, text)


@_pick("nodeid", "generation", "attr.size", "attr.mode")
def _entry(v: tuple[int, ...]) -> str:
    nodeid, generation, size, mode = v
    if not nodeid:
        return "negative entry"
    return f"nodeid={nodeid} gen={generation} {_mode(mode)} size={size}"


@_pick("attr.ino", "attr.size", "attr.mode")
def _attr(v: tuple[int, ...]) -> str:
    ino, size, mode = v
    return f"{_mode(mode)} size={size} ino={ino}"


def _fields(b: dict[str, Any], *names: str) -> str:
    return " ".join(f"{n}={b[n]}" for n in names if n in b)


def _name_only(b: dict[str, Any]) -> str:
    return _q(b.get("name", ""))


@_pick("fh", "offset", "size")
def _io(v: tuple[int, ...]) -> str:
    fh, offset, size = v
    return f"fh={fh} offset={offset} size={size}"


@_pick("fh")
def _fh(v: tuple[int, ...]) -> str:
    return f"fh={v[0]}"


@_pick("flags")
def _open_in(v: tuple[int, ...]) -> str:
    return f"flags=0o{v[0]:o}"


def _batch_forget(b: dict[str, Any]) -> str:
    pairs = b.get("forgets", [])
    shown = " ".join(f"{p['nodeid']}:{p['nlookup']}" for p in pairs[:8])
    more = " ..." if len(pairs) > 8 else ""
    return f"count={b.get('count', 0)} {shown}{more}".rstrip()


def _rename(b: dict[str, Any]) -> str:
    flags = f" flags={b['flags']}" if b.get("flags") else ""
    return (
        f"{_q(b.get('oldname', ''))} -> newdir={b.get('newdir', 0)} "
        f"{_q(b.get('newname', ''))}{flags}"
    )


def _setattr(b: dict[str, Any]) -> str:
    valid = b.get("valid", 0)
    names = flag_names(valid, FattrFlag)
    shown = [f"valid={'|'.join(names) or 0}"]
    for flag, key in ((FattrFlag.SIZE, "size"), (FattrFlag.FH, "fh"), (FattrFlag.UID, "uid"),
                      (FattrFlag.GID, "gid")):  # fmt: skip
        if valid & flag:
            shown.append(f"{key}={b.get(key, 0)}")
    if valid & FattrFlag.MODE:
        shown.append(f"mode=0o{b.get('mode', 0):o}")
    return " ".join(shown)


def _init(b: dict[str, Any]) -> str:
    if "major" not in b:
        return ""
    extra = f" max_readahead={b['max_readahead']}" if "max_readahead" in b else ""
    return f"{b['major']}.{b.get('minor', 0)} flags=0x{int(init_flags(b)):x}{extra}"


def _lk(b: dict[str, Any]) -> str:
    lk = b.get("lk") or {}
    return (
        f"fh={b.get('fh', 0)} owner=0x{b.get('owner', 0):x} type={lk.get('type', 0)} "
        f"range={lk.get('start', 0)}-{lk.get('end', 0)} pid={lk.get('pid', 0)}"
    )


def _copy(b: dict[str, Any]) -> str:
    return (
        f"fh={b.get('fh_in', 0)} off={b.get('off_in', 0)} -> nodeid={b.get('nodeid_out', 0)} "
        f"fh={b.get('fh_out', 0)} off={b.get('off_out', 0)} len={b.get('len', 0)}"
    )


_Fmt = Callable[[dict[str, Any]], str]

#: opcode -> key arguments of its request
REQUEST_ARGS: dict[int, _Fmt] = {
    _O.LOOKUP: _name_only,
    _O.UNLINK: _name_only,
    _O.RMDIR: _name_only,
    _O.REMOVEXATTR: _name_only,
    _O.READ: _io,
    _O.READDIR: _io,
    _O.READDIRPLUS: _io,
    _O.WRITE: _io,
    _O.RELEASE: _fh,
    _O.RELEASEDIR: _fh,
    _O.FLUSH: _fh,
    _O.FORGET: _pick("nlookup")(lambda v: f"nlookup={v[0]}"),
    _O.BATCH_FORGET: _batch_forget,
    _O.OPEN: _open_in,
    _O.OPENDIR: _open_in,
    _O.CREATE: lambda b: (
        f"{_q(b.get('name', ''))} flags=0o{b.get('flags', 0):o} mode=0o{b.get('mode', 0):o}"
    ),
    _O.MKDIR: lambda b: f"{_q(b.get('name', ''))} mode=0o{b.get('mode', 0):o}",
    _O.MKNOD: lambda b: (
        f"{_q(b.get('name', ''))} mode=0o{b.get('mode', 0):o} rdev={b.get('rdev', 0)}"
    ),
    _O.SYMLINK: lambda b: f"{_q(b.get('name', ''))} -> {_q(b.get('target', ''))}",
    _O.LINK: lambda b: f"oldnodeid={b.get('oldnodeid', 0)} {_q(b.get('newname', ''))}",
    _O.RENAME: _rename,
    _O.RENAME2: _rename,
    _O.GETATTR: _pick("getattr_flags", "fh")(lambda v: f"fh={v[1]}" if v[0] & 1 else ""),
    _O.SETATTR: _setattr,
    _O.FSYNC: lambda b: _fields(b, "fh", "fsync_flags"),
    _O.FSYNCDIR: lambda b: _fields(b, "fh", "fsync_flags"),
    _O.SETXATTR: lambda b: (
        f"{_q(b.get('name', ''))} size={b.get('size', 0)} flags={b.get('flags', 0)}"
    ),
    _O.GETXATTR: lambda b: f"{_q(b.get('name', ''))} size={b.get('size', 0)}",
    _O.LISTXATTR: lambda b: _fields(b, "size"),
    _O.INIT: _init,
    _O.CUSE_INIT: lambda b: (
        f"{b.get('major', 0)}.{b.get('minor', 0)} flags=0x{b.get('flags', 0):x}"
    ),
    _O.GETLK: _lk,
    _O.SETLK: _lk,
    _O.SETLKW: _lk,
    _O.ACCESS: _pick("mask")(lambda v: f"mask=0o{v[0]:o}"),
    _O.INTERRUPT: lambda b: _fields(b, "unique"),
    _O.BMAP: lambda b: _fields(b, "block", "blocksize"),
    _O.IOCTL: lambda b: (
        f"fh={b.get('fh', 0)} cmd=0x{b.get('cmd', 0):x} in_size={b.get('in_size', 0)} "
        f"out_size={b.get('out_size', 0)}"
    ),
    _O.POLL: lambda b: f"fh={b.get('fh', 0)} kh={b.get('kh', 0)} events=0x{b.get('events', 0):x}",
    _O.NOTIFY_REPLY: lambda b: _fields(b, "offset", "size"),
    _O.FALLOCATE: lambda b: _fields(b, "fh", "offset", "length", "mode"),
    _O.LSEEK: lambda b: _fields(b, "fh", "offset", "whence"),
    _O.COPY_FILE_RANGE: _copy,
    _O.COPY_FILE_RANGE_64: _copy,
    _O.STATX: lambda b: (
        (f"fh={b.get('fh', 0)} " if b.get("getattr_flags", 0) & 1 else "")
        + f"mask=0x{b.get('sx_mask', 0):x}"
    ),
    _O.SETUPMAPPING: lambda b: _fields(b, "fh", "foffset", "len", "moffset"),
    _O.REMOVEMAPPING: lambda b: _fields(b, "count"),
}


@_pick("fh", "open_flags")
def _open_out(v: tuple[int, ...]) -> str:
    fh, open_flags = v
    flags = _OPEN_FLAGS_TEXT.get(open_flags)
    if flags is None:
        flags = _memo(_OPEN_FLAGS_TEXT, open_flags, "|".join(flag_names(open_flags, FopenFlag)))
    return f"fh={fh}" + (f" {flags}" if flags else "")


class _Listing:
    """The text of a directory listing, by its record names (for a listing left unbuilt,
    read from the frame's bytes)."""

    __slots__ = ()

    def __call__(self, b: dict[str, Any]) -> str:
        return self.text([e.get("name", "") for e in b.get("entries", [])])

    def unbuilt(self, d: Decoded, data: bytes) -> str:
        lazy = d.lazy
        if lazy is None or lazy.dirents is None:
            return self(d.body)
        return self.text(lazy.names(data))

    @staticmethod
    def text(names: list[str]) -> str:
        shown = " ".join(_q(n) for n in names[:4])
        more = " ..." if len(names) > 4 else ""
        return f"{len(names)} entries {shown}{more}".rstrip()


class _Sized:
    """The text of a body that is a run of bytes, by its length (for a run left unbuilt,
    the frame's length less the header; kept by length: a capture repeats its sizes)."""

    __slots__ = ("name", "text", "texts")

    def __init__(self, name: str, text: Callable[[int], str]) -> None:
        self.name = name
        self.text = text
        self.texts: dict[int, str] = {}

    def __call__(self, b: dict[str, Any]) -> str:
        return self.text(len(b.get(self.name, b"")))

    def unbuilt(self, d: Decoded, data: bytes) -> str:
        lazy = d.lazy
        if lazy is None or lazy.rest != self.name:
            return self(d.body)
        size = len(data) - lazy.pos
        text = self.texts.get(size)
        if text is None:
            text = _memo(self.texts, size, self.text(size))
        return text


_dir_reply = _Listing()


def _xattr_reply(b: dict[str, Any]) -> str:
    if "value" in b:
        return f"{len(b['value'])} bytes"
    if "names" in b:
        return " ".join(_q(n) for n in b["names"])
    return _fields(b, "size")


def _init_reply(b: dict[str, Any]) -> str:
    if "major" not in b:
        return ""
    extra = _fields(b, "max_write", "max_pages", "max_background")
    return f"{b['major']}.{b.get('minor', 0)} flags=0x{int(init_flags(b)):x} {extra}".rstrip()


def _statx_reply(b: dict[str, Any]) -> str:
    st = b.get("stat") or {}
    return f"{_mode(st.get('mode', 0))} size={st.get('size', 0)} ino={st.get('ino', 0)}"


#: opcode -> key fields of its successful reply
REPLY_ARGS: dict[int, _Fmt] = {
    _O.LOOKUP: _entry,
    _O.MKNOD: _entry,
    _O.MKDIR: _entry,
    _O.SYMLINK: _entry,
    _O.LINK: _entry,
    _O.CREATE: lambda b: f"{_entry(b)} fh={b.get('fh', 0)}",
    _O.TMPFILE: lambda b: f"{_entry(b)} fh={b.get('fh', 0)}",
    _O.GETATTR: _attr,
    _O.SETATTR: _attr,
    _O.OPEN: _open_out,
    _O.OPENDIR: _open_out,
    _O.READ: _Sized("data", lambda size: f"{size} bytes"),
    _O.WRITE: _pick("size")(lambda v: f"size={v[0]}"),
    _O.COPY_FILE_RANGE: _pick("size")(lambda v: f"size={v[0]}"),
    _O.READDIR: _dir_reply,
    _O.READDIRPLUS: _dir_reply,
    _O.READLINK: lambda b: _q(b.get("target", "")),
    _O.STATFS: lambda b: _fields(b.get("st") or {}, "blocks", "bfree", "files", "bsize"),
    _O.GETXATTR: _xattr_reply,
    _O.LISTXATTR: _xattr_reply,
    _O.INIT: _init_reply,
    _O.CUSE_INIT: lambda b: (
        f"{b.get('major', 0)}.{b.get('minor', 0)} " + " ".join(b.get("dev_info", []))
    ),
    _O.GETLK: lambda b: (
        f"type={(b.get('lk') or {}).get('type', 0)} "
        f"range={(b.get('lk') or {}).get('start', 0)}-{(b.get('lk') or {}).get('end', 0)}"
    ),
    _O.BMAP: lambda b: _fields(b, "block"),
    _O.IOCTL: lambda b: f"result={b.get('result', 0)} {len(b.get('data', b''))} bytes",
    _O.POLL: _pick("revents")(lambda v: f"revents=0x{v[0]:x}"),
    _O.LSEEK: lambda b: _fields(b, "offset"),
    _O.STATX: _statx_reply,
    _O.COPY_FILE_RANGE_64: lambda b: _fields(b, "bytes_copied"),
}


def _request_args(op: int, b: dict[str, Any]) -> str:
    f = REQUEST_ARGS.get(op)
    return f(b) if f is not None and b else ""


def _reply_args(op: int | None, b: dict[str, Any]) -> str:
    f = REPLY_ARGS.get(op) if op is not None else None
    return f(b) if f is not None and b else ""


def _notify_args(code: int | None, b: dict[str, Any]) -> str:
    if code in (NotifyCode.INVAL_ENTRY, NotifyCode.DELETE):
        child = f" child={b['child']}" if "child" in b else ""
        return f"parent={b.get('parent', 0)}{child} {_q(b.get('name', ''))}"
    if code == NotifyCode.STORE:
        return _fields(b, "nodeid", "offset", "size")
    if code == NotifyCode.PRUNE:
        return f"count={b.get('count', 0)} " + " ".join(map(str, b.get("nodeids", [])[:8]))
    keys = [k for k in b if k not in ("padding", "data")]
    return _fields(b, *keys)


def _problems(d: Decoded) -> str:
    if not d.problems:
        return ""
    return " [" + "; ".join(map(str, d.problems)) + "]"


_INBOUND = Direction.INBOUND
#: the formatters that read a body left unbuilt from the frame's bytes
_UNBUILT = frozenset({_Pick, _Listing, _Sized})
_HEAD_IN = "%5d %.6f K>D"
_HEAD_OUT = "%5d %.6f D>K"
_INIT = int(Opcode.INIT)


def result_name(result: int) -> str:
    """The kernel's answer to a daemon → kernel frame (``Frame.result``): ``ok``, or the
    errno name of the refused write (``ENOENT``; unknown numbers stay numeric)."""
    return "ok" if not result else abi_errno_name(result)


def summary_line(frame: DecodedFrame, t0_ns: int, _bare: bool = False) -> str:
    """One line per frame, like tshark and tcpdump: the frame number (Wireshark's
    ``frame.number``, from 1), time, direction, unique, opcode, nodeid, arguments;
    ``refused ERRNO`` at the end when the kernel refused the daemon's frame."""
    index, t_ns, direction, data, _orig_len, channel, _comment, result = frame.record
    if result and not _bare:
        return f"{summary_line(frame, t0_ns, True)} refused {result_name(result)}"
    # %-formatting: the same text as f"{n:>5} {t:.6f}", in about half the time
    head = (_HEAD_IN if direction is _INBOUND else _HEAD_OUT) % (
        index + 1,
        (t_ns - t0_ns) / 1e9,
    )
    if channel:
        head += f" ch{channel}"
    d = frame.decoded
    if d is None:
        return f"{head} ? undecodable: {frame.error}"
    kind = d.kind
    tail = _problems(d) if d.problems else ""
    if kind == "notify":
        return f"{head} 0 NOTIFY_{d.name} {_notify_args(d.opcode, d.body)}{tail}"
    err = unique = 0
    if kind == "request":
        table: dict[int, _Fmt] | None = REQUEST_ARGS
    else:
        oh: OutHeader = d.header  # type: ignore[assignment]
        _len, err, unique = oh
        lat = frame.latency_ns
        if lat is not None:
            # the latency's text memoised (formatting it is a good part of a line's work)
            if 10_000 <= lat < 10_000_000:
                lt = _LATENCY_US[lat // 1000]
                if lt is None:
                    lt = _LATENCY_US[lat // 1000] = f" ({latency(lat)})"
            else:
                lt = _LATENCY_NS.get(lat)
                if lt is None:
                    lt = _memo(_LATENCY_NS, lat, f" ({latency(lat)})")
            tail = lt + tail
        if kind == "interrupt-reply":
            status = errno_name(err) if err else "ok"
            return f"{head} {unique} INTERRUPT reply {status}{tail}"
        table = None if err else REPLY_ARGS
    args = ""
    f = table.get(d.opcode) if table is not None else None  # type: ignore[arg-type]
    if f is not None:
        lazy = d.lazy
        if lazy is None or f.__class__ not in _UNBUILT:
            body = d.body
            args = f(body) if body else ""
        elif f.__class__ is _Pick:
            # the body left unbuilt: its few fields read from the frame's bytes, and their
            # text looked up by value before it is made
            get = f.getters.get(lazy)
            if get is None:
                args = f.unbuilt(d, data)
            else:
                values = get(data)
                text = f.texts.get(values)
                args = f.remember(values) if text is None else text
        else:
            args = f.unbuilt(d, data)  # type: ignore[attr-defined]
    if kind == "request":
        h: InHeader = d.header  # type: ignore[assignment]
        nodeid = h[3]  # InHeader: len, opcode, unique, nodeid, ...
        node = _NODE_TEXT.get(nodeid)  # memoised: a capture names few nodes, many times
        if node is None:
            node = _memo(_NODE_TEXT, nodeid, f" nodeid={nodeid}" if nodeid else "")
        if args:
            return f"{head} {h[2]} {d.name}{node} {args}{tail}"
        return f"{head} {h[2]} {d.name}{node}{tail}"
    if err:
        return f"{head} {unique} {d.name} {errno_name(err)}{tail}"
    if args:
        return f"{head} {unique} {d.name} ok {args}{tail}"
    return f"{head} {unique} {d.name} ok{tail}"


# ---- verbose ---------------------------------------------------------------------------


_HEX_KEYS = frozenset({"valid", "mask", "sx_mask", "events", "revents", "cmd", "kh"})


def _value_text(key: str, v: Any) -> str:
    if isinstance(v, int) and v and ("flags" in key or key in _HEX_KEYS):
        return f"0x{v:x} (0o{v:o})" if key == "flags" else f"0x{v:x}"
    if key == "mode" and isinstance(v, int):
        return f"0o{v:o} ({_mode(v)})"
    if isinstance(v, bytes):
        shown = v[:32].hex(" ")
        return f"{len(v)} bytes: {shown}{' ...' if len(v) > 32 else ''}"
    if isinstance(v, str):
        return _q(v)
    return str(v)


def _walk(obj: Any, indent: str) -> Iterator[str]:
    if isinstance(obj, dict):
        for k, v in obj.items():
            if isinstance(v, dict | list) and v and not all(isinstance(x, int) for x in v):
                yield f"{indent}{k}:"
                yield from _walk(v, indent + "  ")
            elif isinstance(v, list):
                yield f"{indent}{k}: [{', '.join(map(str, v))}]"
            else:
                yield f"{indent}{k}: {_value_text(k, v)}"
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            if isinstance(v, dict | list):
                yield f"{indent}[{i}]"
                yield from _walk(v, indent + "  ")
            else:
                yield f"{indent}[{i}] {_value_text('', v)}"


def verbose_lines(frame: DecodedFrame) -> list[str]:
    """Every header and body field, nested, under the summary line (without it)."""
    d = frame.decoded
    if d is None:
        return [f"    raw: {frame.record.data[:64].hex(' ')}"]
    out = ["    header: " + " ".join(f"{k}={v}" for k, v in d.header._asdict().items())]
    if frame.request is not None:
        out.append(f"    request: frame {frame.request.record.number}")
    out.extend(_walk(d.body, "    "))
    if d.opcode == Opcode.INIT and d.kind in ("request", "reply") and "flags" in d.body:
        out.append("    flag names: " + " ".join(flag_names(int(init_flags(d.body)), InitFlag)))
    if d.remainder:
        out.append(f"    remainder: {_value_text('remainder', d.remainder)}")
    for p in d.problems:
        out.append(f"    problem: {p}")
    return out


# ---- JSON Lines ------------------------------------------------------------------------

#: longest byte string written in full as hex in JSON; longer ones are cut (with "len")
JSON_MAX_HEX = 64


def _json_default(v: Any) -> Any:
    if isinstance(v, bytes | bytearray):
        if len(v) <= JSON_MAX_HEX:
            return {"len": len(v), "hex": v.hex()}
        return {"len": len(v), "hex": v[:JSON_MAX_HEX].hex(), "cut": True}
    raise TypeError(f"{type(v).__name__} is not JSON serialisable")


def _asked(frame: DecodedFrame, d: Decoded) -> tuple[Any, int | None, int | None, dict[str, Any]]:
    """What a decoded frame's JSON says beyond its own header: who asked (a request's own
    header; a reply carries its request's), the node id, the error, and the body (an INIT's
    with its flag names)."""
    req = frame.request
    kind = d.kind
    header = d.header
    if kind == "request":
        asker: Any = header
        nodeid = header.nodeid  # type: ignore[union-attr]
        error = None
    else:
        asker = None
        nodeid = None
        error = header.error if kind == "reply" or kind == "interrupt-reply" else None  # type: ignore[union-attr]
    if req is not None:
        rd = req.decoded
        if rd is not None:
            if nodeid is None:
                nodeid = rd.nodeid
            if asker is None and rd.kind == "request":
                asker = rd.header
    body = d.body
    if d.opcode == _INIT and kind in ("request", "reply") and "flags" in body:
        body = {**body, "flag_names": flag_names(int(init_flags(body)), InitFlag)}
    return asker, nodeid, error, body


def json_object(frame: DecodedFrame, t0_ns: int) -> dict[str, Any]:
    """The stable JSON object of one frame (keys documented in fusetrace-decode(1))."""
    rec = frame.record
    d = frame.decoded
    t_ns = rec.t_ns
    obj: dict[str, Any] = {
        "frame": rec.index + 1,
        "time": round((t_ns - t0_ns) / 1e9, 9),
        "t_ns": t_ns,
        "dir": "K>D" if rec.direction is _INBOUND else "D>K",
        "channel": rec.channel,
        "len": rec.orig_len,
    }
    if rec.result is not None:
        obj["result"] = result_name(rec.result)
    if d is None:
        obj.update(kind="undecodable", unique=None, opcode=None, nodeid=None, uid=None,
                   gid=None, pid=None, error=None, errno=None, request_frame=None,
                   latency_ns=None, body={}, problems=[frame.error])  # fmt: skip
        return obj
    req = frame.request
    kind = d.kind
    header = d.header
    asker, nodeid, error, body = _asked(frame, d)
    obj["kind"] = kind
    obj["unique"] = header.unique
    obj["opcode"] = ("NOTIFY_" + d.name) if kind == "notify" else d.name
    obj["nodeid"] = nodeid
    if asker is not None:
        obj["uid"] = asker.uid
        obj["gid"] = asker.gid
        obj["pid"] = asker.pid
    else:
        obj["uid"] = obj["gid"] = obj["pid"] = None
    obj["error"] = error
    obj["errno"] = errno_name(error)[1:] if error else None
    obj["request_frame"] = req.record.index + 1 if req is not None else None
    obj["latency_ns"] = frame.latency_ns
    obj["body"] = body
    obj["problems"] = [str(p) for p in d.problems] if d.problems else []
    if d.remainder:
        obj["remainder"] = d.remainder
    return obj


# ASCII output: names that are not valid UTF-8 (kept with surrogateescape) stay valid JSON
_encoder = json.JSONEncoder(default=_json_default, separators=(",", ":"))


#: the C encoder behind ``_encoder``, made once (``JSONEncoder.encode`` makes one per call);
#: no circular-reference markers: a decoded body is a tree
_c_encode = c_make_encoder(
    None, _json_default, encode_basestring_ascii, None, ":", ",", False, False, True
)


_ascii = encode_basestring_ascii


def _encode(value: Any) -> str:
    return "".join(_c_encode(value, 0))


def json_line(frame: DecodedFrame, t0_ns: int) -> str:
    """:func:`json_object` as one compact line of ASCII JSON.

    The same text ``_encoder.encode(json_object(frame, t0_ns))`` gives (a test holds them
    equal), with the fixed keys written directly: their values are ints, None and ASCII
    names; only the body, the problems and the names go through the encoder."""
    rec = frame.record
    d = frame.decoded
    if d is None:
        return _encoder.encode(json_object(frame, t0_ns))
    t_ns = rec.t_ns
    req = frame.request
    kind = d.kind
    header = d.header
    asker, nodeid, error, body = _asked(frame, d)
    result = rec.result
    lat = frame.latency_ns
    problems = d.problems
    parts = [
        f'{{"frame":{rec.index + 1},"time":{round((t_ns - t0_ns) / 1e9, 9)!r},"t_ns":{t_ns},'
        f'"dir":"{"K>D" if rec.direction is _INBOUND else "D>K"}","channel":{rec.channel},'
        f'"len":{rec.orig_len},',
        "" if result is None else f'"result":{_ascii(result_name(result))},',
        f'"kind":"{kind}","unique":{header.unique},'
        f'"opcode":{_ascii(("NOTIFY_" + d.name) if kind == "notify" else d.name)},'
        f'"nodeid":{"null" if nodeid is None else nodeid},',
        '"uid":null,"gid":null,"pid":null,'
        if asker is None
        else f'"uid":{asker.uid},"gid":{asker.gid},"pid":{asker.pid},',
        '"error":null,"errno":null,'
        if error is None
        else f'"error":{error},"errno":{_ascii(errno_name(error)[1:]) if error else "null"},',
        f'"request_frame":{"null" if req is None else req.record.index + 1},'
        f'"latency_ns":{"null" if lat is None else lat},'
        f'"body":{_encode(body) if body else "{}"},'
        f'"problems":{_encode([str(p) for p in problems]) if problems else "[]"}',
        f',"remainder":{_encode(d.remainder)}}}' if d.remainder else "}",
    ]
    return "".join(parts)


# ---- statistics ------------------------------------------------------------------------


def _percentile(sorted_values: list[int], q: float) -> int:
    if not sorted_values:
        return 0
    k = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[k]


class Stats:
    """Per-opcode counts, errors and reply latencies over a stream of decoded frames."""

    def __init__(self) -> None:
        self.requests: dict[str, int] = {}
        self.replies: dict[str, int] = {}
        self.errors: dict[str, int] = {}
        #: opcode -> errno name -> failed replies (671 GETXATTR ENODATA is not 671 failures)
        self.errnos: dict[str, dict[str, int]] = {}
        self.latencies: dict[str, array[int]] = {}
        self.frames = 0

    def feed(self, frame: DecodedFrame) -> None:
        self.frames += 1
        d = frame.decoded
        if d is None:
            return
        kind = d.kind
        if kind == "request":
            name = d.name
            requests = self.requests
            requests[name] = requests.get(name, 0) + 1
            return
        if kind == "notify":
            name = "NOTIFY_" + d.name
            requests = self.requests
            requests[name] = requests.get(name, 0) + 1
            return
        name = d.name
        replies = self.replies
        replies[name] = replies.get(name, 0) + 1
        err = d.header.error  # type: ignore[union-attr]
        if err:
            self.errors[name] = self.errors.get(name, 0) + 1
            by = self.errnos.get(name)
            if by is None:
                by = self.errnos[name] = {}
            label = errno_name(err).lstrip("-")
            by[label] = by.get(label, 0) + 1
        ns = frame.latency_ns
        if ns is not None:
            lat = self.latencies.get(name)
            if lat is None:
                lat = self.latencies[name] = array("q")
            lat.append(ns)

    def rows(self) -> list[dict[str, Any]]:
        names = sorted(set(self.requests) | set(self.replies),
                       key=lambda n: (-self.requests.get(n, 0), n))  # fmt: skip
        rows = []
        for n in names:
            lat = sorted(self.latencies.get(n, ()))
            rows.append(
                {
                    "opcode": n,
                    "count": self.requests.get(n, 0),
                    "replies": self.replies.get(n, 0),
                    "errors": self.errors.get(n, 0),
                    "errnos": dict(
                        sorted(self.errnos.get(n, {}).items(), key=lambda kv: (-kv[1], kv[0]))
                    ),
                    "p50_ns": _percentile(lat, 0.50) if lat else None,
                    "p90_ns": _percentile(lat, 0.90) if lat else None,
                    "p99_ns": _percentile(lat, 0.99) if lat else None,
                    "max_ns": lat[-1] if lat else None,
                }
            )
        return rows

    def to_dict(self) -> dict[str, Any]:
        return {"frames": self.frames, "opcodes": self.rows()}

    _HEAD = ("opcode", "count", "replies", "errors", "p50", "p90", "p99", "max", "errnos")

    def _cells(self) -> list[list[str]]:
        out = []
        for r in self.rows():
            lat = [latency(r[k]) for k in ("p50_ns", "p90_ns", "p99_ns", "max_ns")]
            names = ", ".join(f"{k} {v}" for k, v in r["errnos"].items())
            out.append(
                [r["opcode"], str(r["count"]), str(r["replies"]), str(r["errors"]), *lat, names]
            )
        return out

    def render_plain(self) -> str:
        cells = [list(self._HEAD), *self._cells()]
        widths = [max(len(row[i]) for row in cells) for i in range(len(self._HEAD))]
        lines = []
        for row in cells:
            first = row[0].ljust(widths[0])
            rest = "  ".join(c.rjust(w) for c, w in zip(row[1:-1], widths[1:-1], strict=True))
            lines.append(f"{first}  {rest}  {row[-1]}".rstrip())
        lines.append(f"{self.frames} frames")
        return "\n".join(lines) + "\n"

    def render_rich(self) -> Any:
        """A rich Table (for a terminal)."""
        from rich.table import Table

        table = Table(title=f"{self.frames} frames", title_justify="left")
        for i, h in enumerate(self._HEAD):
            table.add_column(h, justify="left" if i in (0, len(self._HEAD) - 1) else "right")
        for row in self._cells():
            table.add_row(*row)
        return table
