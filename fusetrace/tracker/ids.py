"""The tracker's FT1: ids and reply pairing (design.md §5).

Functions here are methods of :class:`fusetrace.tracker.machine.Tracker` (bound in its
class body); each raises only its family's rule codes (``@checks``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fusetrace.protocol.abi import (
    FUSE_INT_REQ_BIT,
    FUSE_UNIQUE_RESEND,
    Opcode,
    errno_name,
    opcode_name,
)
from fusetrace.tracker.rules import checks
from fusetrace.tracker.state import (
    ENOENT,
    ENOSYS,
    LIST_AT_END,
    Pending,
)

if TYPE_CHECKING:
    from fusetrace.protocol.connection import Exchange
    from fusetrace.tracker.machine import Tracker


@checks("FT101", "FT102", "FT106", "FT109")
def _unmatched(self: Tracker, idx: int, unique: int, key: int, channel: int) -> None:
    if self._reply_before_init(idx, unique, key):
        return
    was = self.connection.resent.get(key | channel << 64 if channel else key)
    old = was.state if was is not None else None
    if old is not None:
        self._emit(
            "FT109",
            idx,
            f"reply to {opcode_name(old.opcode)} under id {unique} "
            f"after NOTIFY_RESEND; the kernel expects {unique | FUSE_UNIQUE_RESEND}",
            unique=unique,
            opcode=old.opcode,
            related=(old.frame,),
        )
        return
    hit = self._answered.get(key)
    first = hit[0] if hit is not None else None
    if unique & FUSE_INT_REQ_BIT:
        if first is not None:
            self._late_interrupt_reply(idx, unique, key, first)
            return
    elif first is not None:
        self._emit(
            "FT102",
            idx,
            f"second reply to id {unique}, first answered at frame {first + 1} (ENOENT)",
            unique=unique,
            related=(first,),
        )
        return
    nr = self._no_reply.get(key)
    if nr is not None:
        self._emit(
            "FT106",
            idx,
            f"reply to id {unique}, a message that takes no reply (frame {nr + 1}; ENOENT)",
            unique=unique,
            related=(nr,),
        )
        return
    self._emit(
        "FT101",
        idx,
        f"reply to id {unique}, which no outstanding request has (ENOENT)",
        unique=unique,
    )


@checks("FT108")
def _late_interrupt_reply(
    self: Tracker, idx: int, unique: int, key: int, first: int | None
) -> None:
    when = f", answered at frame {first + 1}" if first is not None else ", already answered"
    self._emit(
        "FT108",
        idx,
        f"interrupt reply for id {key}{when} (ENOENT)",
        unique=unique,
        opcode=Opcode.INTERRUPT,
        related=() if first is None else (first,),
    )


@checks("FT112")
def _late(
    self: Tracker, idx: int | None, unique: int, pend: Pending, t_ns: int, *, answered: bool
) -> None:
    age = (t_ns - pend.t_ns) / 1e9
    what = "answered after" if answered else "still unanswered after"
    self._emit(
        "FT112",
        idx,
        f"{opcode_name(pend.opcode)} (frame {pend.frame + 1}) {what} {age:.1f} s; the "
        f"negotiated request timeout is {self.negotiated.request_timeout} s",
        unique=unique,
        opcode=pend.opcode,
        related=(pend.frame,),
    )


@checks("FT103")
def _request_id(self: Tracker, idx: int, unique: int, opcode: int) -> None:
    """A request's id: never 0, bit 0 clear (odd ids are the kernel's interrupt replies)."""
    if unique and not unique & FUSE_INT_REQ_BIT:
        return
    self._emit(
        "FT103",
        idx,
        f"request id {unique} is {'zero' if not unique else 'odd'}",
        unique=unique,
        opcode=opcode,
    )


@checks("FT104")
def _id_reused(self: Tracker, ex: Exchange, idx: int, unique: int, opcode: int) -> None:
    """A request whose id displaced another one's (``Exchange.replaced``): an error while
    that one is still outstanding."""
    old = ex.replaced.state if ex.replaced is not None else None
    if old is None:
        return
    self._emit(
        "FT104",
        idx,
        f"id {unique} reused while {opcode_name(old.opcode)} "
        f"(frame {old.frame + 1}) is outstanding",
        unique=unique,
        opcode=opcode,
        related=(old.frame,),
    )


@checks("FT105")
def _init_id(self: Tracker, idx: int, unique: int, opcode: int) -> None:
    """The first INIT's id: the kernel sends it as 2."""
    if unique == 2:
        return
    self._emit(
        "FT105",
        idx,
        f"{opcode_name(opcode)} has id {unique}, not 2",
        unique=unique,
        opcode=opcode,
    )


@checks("FT110")
def _reply_channel(self: Tracker, idx: int, unique: int, pend: Pending, channel: int) -> bool:
    """A reply must come on the channel (/dev/fuse fd) its request was read from (False when
    not: ENOENT, the request keeps waiting)."""
    if pend.channel == channel:
        return True
    self._emit(
        "FT110",
        idx,
        f"reply on channel {channel} to {opcode_name(pend.opcode)} read "
        f"on channel {pend.channel} (ENOENT; the request keeps waiting)",
        unique=unique,
        opcode=pend.opcode,
        related=(pend.frame,),
    )
    return False


@checks("FT107")
def _interrupt_reply(
    self: Tracker, idx: int, unique: int, error: int, payload: int, pend: Pending
) -> None:
    """A reply to an INTERRUPT (odd id): the header alone; ENOSYS turns interrupts off."""
    if payload:
        self._emit(
            "FT107",
            idx,
            f"interrupt reply with {payload} payload bytes (EINVAL)",
            unique=unique,
            opcode=Opcode.INTERRUPT,
            related=(pend.frame,),
        )
    elif error == -ENOSYS:
        self._interrupts_off = True


@checks("FT113", "FT114")
def _reply_refused(self: Tracker, ex: Exchange, err: int) -> None:
    """The capture says the kernel refused this reply (``Frame.result``) and no rule
    explained why."""
    rec = ex.record
    unique = ex.header[2]
    if unique & FUSE_INT_REQ_BIT and err == ENOENT:
        key = unique & ~FUSE_INT_REQ_BIT
        hit = self._answered.get(key)
        self._late_interrupt_reply(rec.index, unique, key, hit[0] if hit else None)
    elif err == ENOENT and ex.request is not None:
        # the daemon answered an outstanding request: the kernel had ended it (the
        # connection ending at an unmount), not the daemon's fault
        self._emit(
            "FT114",
            rec.index,
            f"the kernel refused this reply with ENOENT: it had already ended the "
            f"request (frame {ex.request.record.index + 1}), as it does when the "
            "connection ends",
            unique=unique,
            opcode=ex.opcode,
            related=(ex.request.record.index,),
        )
    else:
        self._emit(
            "FT113",
            rec.index,
            f"the kernel refused this reply with {errno_name(err)}",
            unique=unique,
        )


@checks("FT111")
def _unanswered_at_end(self: Tracker, waiting: list[tuple[int, Pending]]) -> None:
    """End of capture: the requests still waiting (by frame), late ones first."""
    timeout = self.negotiated.request_timeout
    if timeout:
        for key, p in waiting:
            if self.last_t_ns - p.t_ns > timeout * 1_000_000_000:
                self._late(None, key, p, self.last_t_ns, answered=False)
    for key, p in waiting[:LIST_AT_END]:
        self._emit(
            "FT111",
            None,
            f"{opcode_name(p.opcode)} (frame {p.frame + 1}) never answered",
            unique=key,
            opcode=p.opcode,
            related=(p.frame,),
        )
    if len(waiting) > LIST_AT_END:
        self._emit(
            "FT111",
            None,
            f"... and {len(waiting) - LIST_AT_END} more requests never answered",
        )
