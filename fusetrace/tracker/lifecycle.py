"""The tracker's FT2: lifecycle — lookup counts, node ids, file handles (design.md §5).

Functions here are methods of :class:`fusetrace.tracker.machine.Tracker` (bound in its
class body); each raises only its family's rule codes (``@checks``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fusetrace.protocol import registry
from fusetrace.protocol.abi import (
    FUSE_ROOT_ID,
    S_IFMT,
    VALID_FILE_TYPES,
    Opcode,
    opcode_name,
)
from fusetrace.protocol.registry import (
    HandleKind,
)
from fusetrace.tracker.rules import checks
from fusetrace.tracker.state import (
    LLONG_MAX,
    Node,
    Pending,
)

if TYPE_CHECKING:
    from fusetrace.tracker.machine import Tracker


@checks("FT212")
def _enosys_again(self: Tracker, idx: int, unique: int, opcode: int) -> None:
    """A request the daemon answered ENOSYS to before (an INTERRUPT: after an interrupt
    reply answered ENOSYS); the kernel does not send it again."""
    if opcode == Opcode.INTERRUPT:
        if not self._interrupts_off:
            return
        message = "INTERRUPT sent after an interrupt reply answered ENOSYS"
    elif opcode in self._enosys:
        message = f"{opcode_name(opcode)} sent again after the daemon answered ENOSYS"
    else:
        return
    self._emit("FT212", idx, message, unique=unique, opcode=opcode)


@checks("FT202", "FT203")
def _check_nodeid(self: Tracker, idx: int, unique: int, opcode: int, nodeid: int) -> None:
    if nodeid == FUSE_ROOT_ID or nodeid in self.nodes or self._counts_lost:
        return
    if self._reported_nodes.get(nodeid) is not None:
        return
    self._reported_nodes.add(nodeid, idx)
    gone = self._forgotten.get(nodeid)
    if gone is not None:
        self._emit(
            "FT202",
            idx,
            f"{opcode_name(opcode)} names node id {nodeid}, forgotten at frame {gone + 1}",
            unique=unique,
            opcode=opcode,
            related=(gone,),
        )
    else:
        self._emit(
            "FT203",
            idx,
            f"{opcode_name(opcode)} names node id {nodeid}, which no entry reply announced",
            unique=unique,
            opcode=opcode,
        )


@checks("FT209")
def _check_fh(
    self: Tracker, idx: int, unique: int, opcode: int, nodeid: int, fh: int, kind: HandleKind
) -> None:
    handles = self.handles
    if kind is HandleKind.EITHER:
        if handles.get((nodeid, fh, False)) or handles.get((nodeid, fh, True)):
            return
        is_dir = False
    else:
        is_dir = kind is HandleKind.DIR
        if handles.get((nodeid, fh, is_dir)):
            return
    if fh == 0 and (self.no_open or self.no_opendir):
        return
    key = (nodeid, fh, is_dir)
    if key in self._reported_fhs:
        return  # one finding per unknown handle, not one per request using it
    self._reported_fhs.add(key, idx)
    if self._fh_open.get(fh):
        self._foreign_handle(idx, unique, opcode, nodeid, fh, kind)
        return
    gone = self._released.get(key)
    if gone is None and kind is HandleKind.EITHER:
        gone = self._released.get((nodeid, fh, True))
    if gone is not None:
        self._emit(
            "FT209",
            idx,
            f"{opcode_name(opcode)} uses fh {fh}, released at frame {gone + 1}",
            unique=unique,
            opcode=opcode,
            related=(gone,),
        )
    else:
        self._unknown_handle(idx, unique, opcode, fh, "uses")


@checks("FT208")
def _unknown_handle(self: Tracker, idx: int, unique: int, opcode: int, fh: int, verb: str) -> None:
    what = f"uses fh {fh}," if verb == "uses" else f"of fh {fh},"
    self._emit(
        "FT208",
        idx,
        f"{opcode_name(opcode)} {what} which no open reply returned",
        unique=unique,
        opcode=opcode,
    )


@checks("FT215")
def _foreign_handle(
    self: Tracker, idx: int, unique: int, opcode: int, nodeid: int, fh: int, kind: HandleKind
) -> None:
    """fh is open, but not as (nodeid, fh, kind): a frame the kernel cannot send."""
    where = sorted(
        f"{'directory' if d else 'file'} handle on node {n}" for n, f, d in self.handles if f == fh
    )
    want = {HandleKind.FILE: "file", HandleKind.DIR: "directory"}.get(kind, "file or directory")
    self._emit(
        "FT215",
        idx,
        f"{opcode_name(opcode)} names fh {fh} on node {nodeid} as a {want} handle, "
        f"but it is open only as {', '.join(where[:3])}",
        unique=unique,
        opcode=opcode,
    )


@checks("FT210", "FT211")
def _release(
    self: Tracker, idx: int, unique: int, opcode: int, nodeid: int, fh: int, is_dir: bool
) -> None:
    key = (nodeid, fh, is_dir)
    handles = self.handles
    n = handles.get(key, 0)
    if n:
        if n == 1:
            del handles[key]
            self.direct_io.discard(key)
        else:
            handles[key] = n - 1
        c = self._fh_open.get(fh, 0) - 1
        if c > 0:
            self._fh_open[fh] = c
        else:
            self._fh_open.pop(fh, None)
        self._released.add(key, idx)
        return
    if self._fh_open.get(fh):
        self._foreign_handle(
            idx, unique, opcode, nodeid, fh, HandleKind.DIR if is_dir else HandleKind.FILE
        )
        return
    gone = self._released.get(key)
    if gone is not None:
        self._emit(
            "FT210",
            idx,
            f"{opcode_name(opcode)} of fh {fh}, already released at frame {gone + 1}",
            unique=unique,
            opcode=opcode,
            related=(gone,),
        )
    elif self.no_opendir if is_dir else self.no_open:
        self._emit(
            "FT211",
            idx,
            f"{opcode_name(opcode)} of fh {fh} although "
            f"{'OPENDIR' if is_dir else 'OPEN'} answered ENOSYS (no-open mode)",
            unique=unique,
            opcode=opcode,
        )
    else:
        self._unknown_handle(idx, unique, opcode, fh, "of")


@checks("FT201")
def _forget(self: Tracker, idx: int, unique: int, opcode: int, nodeid: int, n: int) -> None:
    node = self.nodes.get(nodeid)
    held = node.count if node is not None else 0
    if n > held and not self._counts_lost:
        if nodeid == FUSE_ROOT_ID and node is None:
            what = "the root, which the kernel never forgets"
        else:
            what = f"node id {nodeid}, which holds {held}"
        self._emit(
            "FT201",
            idx,
            f"{opcode_name(opcode)} drops {n} lookups of {what}",
            unique=unique,
            opcode=opcode,
        )
    if node is None:
        return
    node.count -= n
    if node.count <= 0:
        del self.nodes[nodeid]
        self._forgotten.add(nodeid, idx)


@checks("FT204", "FT205")
def _entry_reply(
    self: Tracker,
    idx: int,
    unique: int,
    spec: registry.OpSpec,
    pend: Pending,
    data: bytes,
    off: int,
) -> bool:
    """Judge an entry_out; count the lookup if the kernel would accept it."""
    f = self._f
    opcode = spec.opcode
    name = opcode_name(opcode)
    nodeid = f.u64.unpack_from(data, off + f.entry_nodeid)[0]
    generation = f.u64.unpack_from(data, off + f.entry_generation)[0]
    mode = f.u32.unpack_from(data, off + f.entry_mode)[0]
    size = f.u64.unpack_from(data, off + f.entry_size)[0]
    rel = (pend.frame,)
    if size > LLONG_MAX:
        self._emit(
            "FT205",
            idx,
            f"{name} reply with size {size}, above LLONG_MAX (EIO)",
            unique=unique,
            opcode=opcode,
            related=rel,
        )
        return False
    if spec.creates:
        if nodeid == 0 or nodeid == FUSE_ROOT_ID:
            self._emit(
                "FT204",
                idx,
                f"{name} reply with node id {nodeid} (the kernel rejects it; the caller gets EIO)",
                unique=unique,
                opcode=opcode,
                related=rel,
            )
            return False
    elif nodeid == 0:
        return False  # a negative LOOKUP entry
    elif nodeid == FUSE_ROOT_ID and not pend.info.get("dot"):
        self._emit(
            "FT204",
            idx,
            "LOOKUP of a name returned the root (1); the kernel rejects it with EIO",
            unique=unique,
            opcode=opcode,
            related=rel,
        )
        return False
    ftype = mode & S_IFMT
    if ftype not in VALID_FILE_TYPES:
        self._emit(
            "FT205",
            idx,
            f"{name} reply with mode {mode:#o}: not a file type (EIO)",
            unique=unique,
            opcode=opcode,
            related=rel,
        )
        return False
    want = self._wanted_type(spec, pend)
    if want is not None and ftype != want:
        self._emit(
            "FT205",
            idx,
            f"{name} reply with file type {ftype:#o}, {want:#o} was asked for (EIO)",
            unique=unique,
            opcode=opcode,
            related=rel,
        )
        return False
    if nodeid == FUSE_ROOT_ID:
        return True
    nlink = f.u32.unpack_from(data, off + f.entry_nlink)[0]
    self._count(idx, unique, opcode, nodeid, generation, ftype, size, rel, nlink)
    if pend.names and not pend.info.get("dot"):
        self._names.add((pend.nodeid, pend.names[0]), nodeid)
    return True


@checks("FT206")
def _count(
    self: Tracker,
    idx: int,
    unique: int,
    opcode: int,
    nodeid: int,
    generation: int,
    ftype: int,
    size: int,
    rel: tuple[int, ...],
    nlink: int = 1,
) -> None:
    node = self.nodes.get(nodeid)
    if node is None:
        self.nodes[nodeid] = Node(1, generation, ftype, size, nlink)
        self._forgotten.pop(nodeid)
        self._reported_nodes.pop(nodeid)
        return
    name = opcode_name(opcode)
    if node.generation != generation and node.unlinked:
        self._recycled(idx, unique, opcode, nodeid, node, generation, ftype, rel)
        node.generation = generation
        node.ftype = ftype
    elif node.generation != generation:
        self._emit(
            "FT206",
            idx,
            f"{name} returns node id {nodeid} with generation {generation}; "
            f"the kernel still holds it with generation {node.generation}",
            unique=unique,
            opcode=opcode,
            related=rel,
        )
        node.generation = generation
    if node.ftype != ftype:
        self._type_changed(idx, unique, opcode, nodeid, node, ftype, rel)
    node.count += 1
    node.size = size
    node.nlink = nlink
    node.unlinked = False


@checks("FT207")
def _type_changed(
    self: Tracker,
    idx: int,
    unique: int,
    opcode: int,
    nodeid: int,
    node: Node,
    ftype: int,
    rel: tuple[int, ...],
) -> None:
    self._emit(
        "FT207",
        idx,
        f"{opcode_name(opcode)} gives node id {nodeid} file type {ftype:#o}, earlier "
        f"{node.ftype:#o} (the kernel marks the inode bad)",
        unique=unique,
        opcode=opcode,
        related=rel,
    )
    node.ftype = ftype


@checks("FT217")
def _recycled(
    self: Tracker,
    idx: int,
    unique: int,
    opcode: int,
    nodeid: int,
    node: Node,
    generation: int,
    ftype: int,
    rel: tuple[int, ...],
) -> None:
    kind = "" if ftype == node.ftype else f" and file type {ftype:#o} (was {node.ftype:#o})"
    self._emit(
        "FT217",
        idx,
        f"{opcode_name(opcode)} recycles node id {nodeid} with generation {generation}"
        f"{kind}; the old inode (generation {node.generation}) lost its last name, the "
        "kernel makes it stale",
        unique=unique,
        opcode=opcode,
        related=rel,
    )


@checks("FT216")
def _rejected_direntplus(
    self: Tracker, idx: int, unique: int, n: int, ename: bytes, nodeid: int, mode: int, size: int
) -> None:
    if nodeid == FUSE_ROOT_ID:
        why = "names the root (node id 1)"
    elif size > LLONG_MAX:
        why = f"has size {size}, above LLONG_MAX"
    else:
        why = f"has mode {mode:#o}: not a file type"
    self._emit(
        "FT216",
        idx,
        f"READDIRPLUS entry {n} {ename!r} {why}; the kernel does not link it (EIO) and "
        f"sends FORGET({nodeid}, 1)",
        unique=unique,
        opcode=Opcode.READDIRPLUS,
    )


@checks("FT213", "FT214")
def _held_at_end(self: Tracker) -> None:
    """End of capture: lookups and handles still held (information: the kernel sends no
    FORGET or RELEASE at unmount)."""
    if self.nodes:
        total = sum(n.count for n in self.nodes.values())
        sample = ", ".join(str(n) for n in sorted(self.nodes)[:10])
        self._emit(
            "FT213",
            None,
            f"{len(self.nodes)} node ids still hold {total} lookups "
            f"(e.g. {sample}); the kernel sends no FORGET at unmount",
        )
    if self.handles:
        total = sum(self.handles.values())
        sample = ", ".join(f"{fh}" for fh in sorted({k[1] for k in self.handles})[:10])
        self._emit("FT214", None, f"{total} file handles never released (e.g. {sample})")
