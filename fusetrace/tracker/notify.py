"""The tracker's FT5: notifications and interrupts (design.md §5).

Functions here are methods of :class:`fusetrace.tracker.machine.Tracker` (bound in its
class body); each raises only its family's rule codes (``@checks``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fusetrace.frame import Frame
from fusetrace.protocol import registry
from fusetrace.protocol.abi import (
    FUSE_INT_REQ_BIT,
    FUSE_ROOT_ID,
    NotifyCode,
    Opcode,
    errno_name,
    notify_name,
    opcode_name,
)
from fusetrace.protocol.header import OUT_HEADER_SIZE
from fusetrace.protocol.registry import (
    NotifySize,
)
from fusetrace.tracker import _layout
from fusetrace.tracker.rules import checks
from fusetrace.tracker.state import (
    _NOTIFY,
    CROSSING_KERNEL_FRAMES,
    MEMORY,
    SessionState,
)

if TYPE_CHECKING:
    from fusetrace.tracker.machine import Tracker


@checks("FT506", "FT507")
def _interrupt(self: Tracker, rec: Frame, unique: int, data: bytes | None) -> None:
    idx = rec.index
    opcode = Opcode.INTERRUPT
    self._enosys_again(idx, unique, opcode)
    target = unique & ~FUSE_INT_REQ_BIT
    if data is not None:
        body_target = self._request_field(data, "fuse_interrupt_in", "unique")
        if body_target is not None:
            if unique != body_target | FUSE_INT_REQ_BIT:
                self._emit(
                    "FT507",
                    idx,
                    f"INTERRUPT header id {unique}, target {body_target}",
                    unique=unique,
                    opcode=opcode,
                )
            target = body_target
    if self.connection.find(target) is None:
        hit = self._answered.get(target)
        answered, after = hit if hit is not None else (None, None)
        # this INTERRUPT is already counted in summary.requests
        if after is not None and self.summary.requests - 1 - after <= CROSSING_KERNEL_FRAMES:
            return  # sent while the request was outstanding; crossed its reply
        if answered is None:
            # not seen (yet): with several readers the target may be recorded after
            # its INTERRUPT; judged at the end of the capture (FT510)
            if len(self._int_waiting) < MEMORY:
                self._int_waiting[target] = idx
            return
        when = f" (answered at frame {answered + 1})"
        self._emit(
            "FT506",
            idx,
            f"INTERRUPT for id {target}, which is not outstanding{when}",
            unique=unique,
            opcode=opcode,
            related=() if answered is None else (answered,),
        )


@checks("FT501", "FT502", "FT503", "FT504", "FT505", "FT508")
def _notification(self: Tracker, rec: Frame, code: int, cut: bool) -> None:
    idx = rec.index
    data = rec.data
    op = notify_name(code)
    op = op if op.startswith("NOTIFY_") else f"NOTIFY_{op}"
    if self.state is not SessionState.READY:
        self._emit(
            "FT504",
            idx,
            f"notification {notify_name(code)} before the INIT reply (newest kernels: EINVAL)",
            opcode=op,
        )
    nspec = _NOTIFY.get(code)
    if nspec is None:
        self._emit("FT501", idx, f"notification code {code} is unknown (EINVAL)", opcode=op)
        return
    payload = rec.orig_len - OUT_HEADER_SIZE
    name = nspec.name
    first = nspec.args[0].struct if nspec.args else None
    base = _layout.size_of(first, self.negotiated) if first else 0
    base = base or 0
    kind = nspec.size
    if kind is NotifySize.ANY:
        return  # RESEND: the connection put every outstanding request back
    if payload < base:
        self._emit(
            "FT502",
            idx,
            f"{name} payload is {payload} bytes, shorter than its {base}-byte struct (EINVAL)",
            opcode=op,
        )
        return
    if cut or not self.bodies:
        if kind is NotifySize.EXACT and payload != base:
            self._emit(
                "FT502", idx, f"{name} payload is {payload} bytes, must be {base}", opcode=op
            )
        return
    want = base
    if kind is NotifySize.NAME:
        assert first is not None
        namelen = self._notify_field(data, first, "namelen") or 0
        if namelen > self._name_max():
            self._emit(
                "FT503",
                idx,
                f"{name} namelen {namelen} above the limit {self._name_max()} (ENAMETOOLONG)",
                opcode=op,
            )
            return
        want = base + namelen + 1
    elif kind is NotifySize.DATA:
        assert first is not None
        want = base + (self._notify_field(data, first, "size") or 0)
    elif kind is NotifySize.ARRAY:
        assert first is not None
        want = base + 8 * (self._notify_field(data, first, "count") or 0)
    if payload != want:
        self._emit(
            "FT502",
            idx,
            f"{name} payload is {payload} bytes, must be {want} (EINVAL)",
            opcode=op,
        )
        return
    if code == NotifyCode.RETRIEVE:
        nu = self._notify_field(data, "fuse_notify_retrieve_out", "notify_unique")
        hit = self.connection.find(nu) if nu is not None else None
        if hit is not None and hit.state is not None:
            p = hit.state
            self._emit(
                "FT505",
                idx,
                f"RETRIEVE notify_unique {nu} equals the id of "
                f"outstanding {opcode_name(p.opcode)} (frame {p.frame + 1})",
                related=(p.frame,),
                opcode=op,
            )
    if code == NotifyCode.RETRIEVE and not rec.result:
        self._retrieve(idx, data)
    nspec = registry.NOTIFY.get(code)
    target = nspec.node_field if nspec is not None else None
    if target is not None and first is not None:
        node = self._notify_field(data, first, target)
        if node is not None and node != FUSE_ROOT_ID and node not in self.nodes:
            self._emit(
                "FT508",
                idx,
                f"{name} names node id {node}, which the kernel does not hold "
                "(the write() gets ENOENT)",
                opcode=op,
            )


@checks("FT509")
def _notify_reply(self: Tracker, idx: int, unique: int, nodeid: int, data: bytes) -> None:
    """NOTIFY_REPLY answers exactly one earlier RETRIEVE (protocol.md §6)."""
    st = "fuse_notify_retrieve_in"
    offset = self._request_field(data, st, "offset")
    size = self._request_field(data, st, "size")
    if offset is None or size is None:
        return
    waiting = self._retrieves.get(unique)
    why = ""
    related: tuple[int, ...] = ()
    if waiting:
        for i, (frame, node, off, asked) in enumerate(waiting):
            if node == nodeid and off == offset:
                del waiting[i]
                if not waiting:
                    del self._retrieves[unique]
                self._retrieved.add(unique, idx)
                if size <= asked:
                    return
                why = f"carries {size} bytes; the RETRIEVE (frame {frame + 1}) asked for {asked}"
                related = (frame,)
                break
        else:
            frame, node, off, asked = waiting[0]
            why = (
                f"names node {nodeid} at offset {offset}; the RETRIEVE (frame {frame + 1}) "
                f"asked for node {node} at offset {off}"
            )
            related = (frame,)
    else:
        done = self._retrieved.get(unique)
        if done is not None:
            why = f"is a second answer; the RETRIEVE was answered at frame {done + 1}"
            related = (done,)
        else:
            why = "answers no RETRIEVE with that notify_unique"
    self._emit(
        "FT509",
        idx,
        f"NOTIFY_REPLY {unique} {why}",
        unique=unique,
        opcode=Opcode.NOTIFY_REPLY,
        related=related,
    )


@checks("FT511")
def _notification_refused(self: Tracker, idx: int, err: int) -> None:
    """The capture says the kernel refused this notification and no rule explained why."""
    self._emit("FT511", idx, f"the kernel refused this notification with {errno_name(err)}")


@checks("FT510")
def _interrupts_at_end(self: Tracker) -> None:
    """End of capture: INTERRUPTs whose target never appeared."""
    for target, frame in self._int_waiting.items():
        self._emit(
            "FT510",
            None,
            f"INTERRUPT (frame {frame + 1}) for id {target}: no request with that id "
            "appears in the capture",
            unique=target | FUSE_INT_REQ_BIT,
            opcode=Opcode.INTERRUPT,
            related=(frame,),
        )
