"""A capture as units and the dependencies between them; keeping a set of units closed.

Pure. A *unit* is what can be kept or dropped as a whole: a request with its reply (and the
INTERRUPT of it), a notification, a reply that answers nothing. Dependencies come from the
registry's id effects: a request needs the request whose reply gave the node id it names
(header nodeid, ``node_fields``: LOOKUP chains) and the one that opened the handle it uses
(``fh_fields``: OPEN before READ, OPENDIR before READDIR); INIT is always kept. A kept OPEN
brings its RELEASE (and OPENDIR its RELEASEDIR), as the kernel would send them. FORGETs are
not units: :meth:`Graph.records` writes the FORGETs the kept lookups need, at the place the
recording forgot the node, with the counts the kept lookups add up to.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from fusetrace.frame import Direction, Frame
from fusetrace.protocol.abi import FUSE_INT_REQ_BIT, FUSE_ROOT_ID, NotifyCode, Opcode
from fusetrace.protocol.encode import encode_request
from fusetrace.protocol.header import IN_HEADER_SIZE
from fusetrace.protocol.registry import NOTIFY, OPS, HandleEffect, LookupEffect
from fusetrace.protocol.schemas import field_reader
from fusetrace.protocol.session import Negotiated
from fusetrace.protocol.stream import FrameDecoder

_FORGET = int(Opcode.FORGET)
_BATCH_FORGET = int(Opcode.BATCH_FORGET)
_INIT = int(Opcode.INIT)
_DESTROY = int(Opcode.DESTROY)
_INTERRUPT = int(Opcode.INTERRUPT)
_NOTIFY_REPLY = int(Opcode.NOTIFY_REPLY)
_RETRIEVE = int(NotifyCode.RETRIEVE)
_READDIRS = (int(Opcode.READDIR), int(Opcode.READDIRPLUS))
_OPENERS = (HandleEffect.OPENS, HandleEffect.OPENS_DIR)
_RELEASERS = (HandleEffect.RELEASES, HandleEffect.RELEASES_DIR)


@dataclass
class Unit:
    """Frames kept or dropped together."""

    id: int
    #: record indices, in capture order (the request first)
    frames: list[int]
    #: "request", "notify" or "stray" (a daemon frame that answers nothing known)
    kind: str
    opcode: int | None
    label: str
    #: units this one cannot go without
    deps: set[int] = field(default_factory=set)
    #: units that must come with this one (the RELEASE of an OPEN)
    companions: set[int] = field(default_factory=set)
    #: node id -> lookups the kernel took from this unit's reply
    lookups: Counter[int] = field(default_factory=Counter)
    #: the node id the unit is about (the header's, or the one an entry reply gave), for
    #: grouping
    node: int = 0

    @property
    def first(self) -> int:
        return self.frames[0]


@dataclass
class _Forget:
    """One FORGET or BATCH_FORGET frame of the recording: (node id, nlookup) pairs and, per
    node, the lookups the recording still held after it."""

    index: int
    items: list[tuple[int, int]]
    remaining: dict[int, int]


@dataclass
class Graph:
    """The units of a capture (see the module text)."""

    records: list[Frame]
    units: list[Unit]
    byte_order: str = "little"
    #: units every result keeps (INIT, DESTROY)
    fixed: set[int] = field(default_factory=set)
    #: record index -> unit id
    unit_of: dict[int, int] = field(default_factory=dict)
    forgets: list[_Forget] = field(default_factory=list)
    #: FORGET frames written as recorded whatever is kept (the frame a finding is about)
    pinned: set[int] = field(default_factory=set)

    def pin_forget(self, index: int) -> bool:
        """Keep the FORGET or BATCH_FORGET at ``index`` as recorded; False if it is none."""
        if any(fg.index == index for fg in self.forgets):
            self.pinned.add(index)
            return True
        return False

    # ---- closure --------------------------------------------------------------------------
    def close(self, selected: Iterable[int]) -> frozenset[int]:
        """``selected`` plus everything it needs, transitively, plus the fixed units."""
        out: set[int] = set()
        todo = [*self.fixed, *selected]
        while todo:
            u = todo.pop()
            if u in out:
                continue
            out.add(u)
            unit = self.units[u]
            todo.extend(unit.deps - out)
            todo.extend(unit.companions - out)
        return frozenset(out)

    # ---- the records of a kept set ---------------------------------------------------------
    def frames(self, kept: Iterable[int]) -> list[tuple[int, Frame]]:
        """(original index, record) for a closed set of units, FORGETs included, in capture
        order; records keep their original index."""
        idx: list[int] = []
        owed: Counter[int] = Counter()
        for u in kept:
            idx.extend(self.units[u].frames)
            owed.update(self.units[u].lookups)
        out: list[tuple[int, Frame]] = [(i, self.records[i]) for i in idx]
        # lookups kept so far, node by node, walking the recording's forgets in order
        kept_lookups = self._kept_lookups_before(kept)
        held: Counter[int] = Counter()
        pos = 0
        for fg in self.forgets:
            while pos < len(kept_lookups) and kept_lookups[pos][0] < fg.index:
                held[kept_lookups[pos][1]] += kept_lookups[pos][2]
                pos += 1
            if fg.index in self.pinned:
                out.append((fg.index, self.records[fg.index]))
                for node, n in fg.items:
                    held[node] = max(0, held[node] - n)
                continue
            items = []
            for node, _n in fg.items:
                emit = held[node] - fg.remaining.get(node, 0)
                if emit > 0:
                    items.append((node, emit))
                    held[node] -= emit
            if items:
                out.append((fg.index, self._forget_frame(fg.index, items)))
        out.sort(key=lambda p: p[0])
        return out

    def _kept_lookups_before(self, kept: Iterable[int]) -> list[tuple[int, int, int]]:
        """(reply frame index, node id, lookups) of the kept units, in capture order."""
        got: list[tuple[int, int, int]] = []
        for u in kept:
            unit = self.units[u]
            if unit.lookups:
                at = unit.frames[-1]
                got.extend((at, node, n) for node, n in unit.lookups.items())
        got.sort()
        return got

    def _forget_frame(self, index: int, items: list[tuple[int, int]]) -> Frame:
        rec = self.records[index]
        order = "<" if self.byte_order == "little" else ">"
        hdr = rec.data[:IN_HEADER_SIZE]
        opcode = int.from_bytes(hdr[4:8], self.byte_order)  # type: ignore[arg-type]
        if opcode == _FORGET and len(items) == 1:
            reader = field_reader(order, "fuse_forget_in", "nlookup")
            assert reader is not None
            buf = bytearray(rec.data)
            reader[0].pack_into(buf, IN_HEADER_SIZE + reader[1], items[0][1])
            return rec._replace(data=bytes(buf), orig_len=len(buf))
        uniq = int.from_bytes(hdr[8:16], self.byte_order)  # type: ignore[arg-type]
        ids = [int.from_bytes(hdr[i : i + 4], self.byte_order) for i in (24, 28, 32)]  # type: ignore[arg-type]
        data = encode_request(
            _BATCH_FORGET,
            {"forgets": [{"nodeid": n, "nlookup": c} for n, c in items]},
            unique=uniq,
            uid=ids[0],
            gid=ids[1],
            pid=ids[2],
            negotiated=Negotiated.default(self.byte_order),
        )
        return rec._replace(data=data, orig_len=len(data))

    def records_for(self, kept: Iterable[int]) -> tuple[list[Frame], list[int]]:
        """The records of a closed set, renumbered from 0, and their original indexes."""
        pairs = self.frames(kept)
        recs = [r._replace(index=i) for i, (_, r) in enumerate(pairs)]
        return recs, [o for o, _ in pairs]

    # ---- telling what was kept ------------------------------------------------------------
    def chain(self, target: int) -> list[int]:
        """The units ``target`` stands on, as one line of dependencies ending in it."""
        seen: set[int] = set()
        order: list[int] = []

        def visit(u: int) -> None:
            if u in seen:
                return
            seen.add(u)
            for d in sorted(self.units[u].deps):
                if d not in self.fixed:
                    visit(d)
            order.append(u)

        visit(target)
        return order


def _label(name: str, body: dict[str, object]) -> str:
    for key in ("name", "newname", "oldname"):
        v = body.get(key)
        if isinstance(v, str):
            return f"{name} {v}"
    return name


def build(records: list[Frame], byte_order: str = "little") -> Graph:
    """The units and dependencies of a whole capture."""
    dec = FrameDecoder(byte_order)
    g = Graph(records, [], byte_order)
    #: (channel, unique) -> unit id of a request waiting for its reply
    pending: dict[tuple[int, int], int] = {}
    #: node id -> unit that last gave a lookup of it
    node_src: dict[int, int] = {}
    #: fh -> unit that opened it
    fh_src: dict[int, int] = {}
    #: recorded lookup counts, to know what each forget leaves
    counts: Counter[int] = Counter()
    #: directory handle -> the unit of the last READDIR / READDIRPLUS on it
    listing: dict[int, int] = {}
    #: notify_unique -> the RETRIEVE notification's unit
    retrieves: dict[int, int] = {}
    init_unit: int | None = None

    def new(frames: list[int], kind: str, opcode: int | None, label: str) -> Unit:
        u = Unit(len(g.units), frames, kind, opcode, label)
        g.units.append(u)
        for i in frames:
            g.unit_of[i] = u.id
        if init_unit is not None:
            u.deps.add(init_unit)
        return u

    for rec in records:
        df = dec.feed(rec)
        d = df.decoded
        i = rec.index
        if d is None:
            new([i], "stray", None, "undecodable frame")
            continue
        if rec.direction is Direction.INBOUND:
            op = d.opcode
            if op in (_FORGET, _BATCH_FORGET):
                if op == _FORGET:
                    items = [(d.header.nodeid, int(d.body.get("nlookup", 0)))]  # type: ignore[union-attr]
                else:
                    items = [
                        (int(f["nodeid"]), int(f["nlookup"])) for f in d.body.get("forgets", [])
                    ]
                for node, n in items:
                    counts[node] = max(0, counts[node] - n)
                g.forgets.append(_Forget(i, items, {node: counts[node] for node, _ in items}))
                continue
            spec = OPS.get(op or -1)
            unit = new([i], "request", op, _label(d.name, d.body))
            pending[(rec.channel, d.unique)] = unit.id
            if op == _INIT and init_unit is None:
                init_unit = unit.id
                g.fixed.add(unit.id)
                unit.deps.clear()
                continue
            if op == _DESTROY:
                g.fixed.add(unit.id)
            if spec is None:
                continue
            nodeid = d.header.nodeid  # type: ignore[union-attr]
            unit.node = nodeid
            nodes = [nodeid] if spec.header_nodeid else []
            nodes += [int(d.body.get(f, 0)) for f in spec.node_fields]
            for n in nodes:
                src = node_src.get(n)
                if n not in (0, FUSE_ROOT_ID) and src is not None:
                    unit.deps.add(src)
            uses_fh = spec.handle is HandleEffect.USES_FH or spec.handle in _RELEASERS
            if spec.fh_when is not None:
                fld, mask = spec.fh_when
                uses_fh = uses_fh and bool(int(d.body.get(fld, 0)) & mask)
            if uses_fh:
                for f in spec.fh_fields:
                    src = fh_src.get(int(d.body.get(f, -1)))
                    if src is not None:
                        unit.deps.add(src)
                        if spec.handle in _RELEASERS:
                            g.units[src].companions.add(unit.id)
            if op in _READDIRS:
                # a listing that goes on from an offset needs the listing that gave it
                fh = int(d.body.get("fh", 0))
                if int(d.body.get("offset", 0)) and fh in listing:
                    unit.deps.add(listing[fh])
                listing[fh] = unit.id
            if spec.handle in _RELEASERS:
                fh_src.pop(int(d.body.get("fh", -1)), None)
                listing.pop(int(d.body.get("fh", -1)), None)
            if op == _NOTIFY_REPLY:  # the kernel's answer to a RETRIEVE: goes with it
                src = retrieves.get(d.unique)
                if src is not None:
                    unit.deps.add(src)
                    g.units[src].companions.add(unit.id)
            if op == _INTERRUPT:
                target = pending.get((rec.channel, int(d.body.get("unique", 0))))
                if target is not None:
                    unit.deps.add(target)
            continue
        # daemon -> kernel
        if d.kind == "notify":
            unit = new([i], "notify", d.opcode, d.name)
            nspec = NOTIFY.get(d.opcode or -1)
            if nspec is not None and nspec.node_field is not None:
                unit.node = int(d.body.get(nspec.node_field, 0))
                src = node_src.get(unit.node)
                if src is not None:
                    unit.deps.add(src)
            if d.opcode == _RETRIEVE:
                retrieves[int(d.body.get("notify_unique", 0))] = unit.id
            continue
        key = (rec.channel, d.unique)
        uid = pending.pop(key, None)
        if uid is None or df.request is None:
            new([i], "stray", d.opcode, "unpaired reply")
            continue
        unit = g.units[uid]
        unit.frames.append(i)
        g.unit_of[i] = uid
        if d.unique & FUSE_INT_REQ_BIT or d.error:
            continue
        spec = OPS.get(d.opcode or -1)
        if spec is None:
            continue
        if spec.lookup is LookupEffect.ENTRY:
            n = int(d.body.get("nodeid", 0))
            if n:
                unit.lookups[n] += 1
                unit.node = n  # grouped with what is done to the node it gave
        elif spec.lookup is LookupEffect.READDIRPLUS:
            for e in d.body.get("entries", []):
                n = int(e.get("nodeid", 0))
                if n and e.get("name") not in (".", ".."):
                    unit.lookups[n] += 1
        for n, c in unit.lookups.items():
            node_src[n] = uid
            counts[n] += c
        if spec.handle in _OPENERS:
            fh_src[int(d.body.get("fh", 0))] = uid
    return g
