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
    opcode_name,
)
from fusetrace.tracker.rules import checks
from fusetrace.tracker.state import (
    Pending,
    SessionState,
)

if TYPE_CHECKING:
    from fusetrace.tracker.machine import Tracker


@checks("FT101", "FT102", "FT106", "FT109")
def _unmatched(self: Tracker, idx: int, unique: int, key: int, channel: int) -> None:
    if (
        self.state is SessionState.AWAIT_INIT_REPLY or self.state is SessionState.UNINIT
    ) and key != self._init_key:
        self._reply_before_init(
            idx,
            f"reply to id {unique} before the INIT reply (ENOENT)",
            unique=unique,
        )
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


@checks("FT103")
def _request_id_odd_or_zero(
    self: Tracker,
    frame: int | None,
    message: str,
    *,
    unique: int | None = None,
    opcode: int | str | None = None,
    related: tuple[int, ...] = (),
) -> None:
    self._emit("FT103", frame, message, unique=unique, opcode=opcode, related=related)


@checks("FT104")
def _request_id_reused(
    self: Tracker,
    frame: int | None,
    message: str,
    *,
    unique: int | None = None,
    opcode: int | str | None = None,
    related: tuple[int, ...] = (),
) -> None:
    self._emit("FT104", frame, message, unique=unique, opcode=opcode, related=related)


@checks("FT105")
def _init_not_unique_2(
    self: Tracker,
    frame: int | None,
    message: str,
    *,
    unique: int | None = None,
    opcode: int | str | None = None,
    related: tuple[int, ...] = (),
) -> None:
    self._emit("FT105", frame, message, unique=unique, opcode=opcode, related=related)


@checks("FT107")
def _interrupt_reply_with_payload(
    self: Tracker,
    frame: int | None,
    message: str,
    *,
    unique: int | None = None,
    opcode: int | str | None = None,
    related: tuple[int, ...] = (),
) -> None:
    self._emit("FT107", frame, message, unique=unique, opcode=opcode, related=related)


@checks("FT110")
def _reply_on_wrong_channel(
    self: Tracker,
    frame: int | None,
    message: str,
    *,
    unique: int | None = None,
    opcode: int | str | None = None,
    related: tuple[int, ...] = (),
) -> None:
    self._emit("FT110", frame, message, unique=unique, opcode=opcode, related=related)


@checks("FT113")
def _reply_refused(
    self: Tracker,
    frame: int | None,
    message: str,
    *,
    unique: int | None = None,
    opcode: int | str | None = None,
    related: tuple[int, ...] = (),
) -> None:
    self._emit("FT113", frame, message, unique=unique, opcode=opcode, related=related)


@checks("FT114")
def _reply_after_request_ended(
    self: Tracker,
    frame: int | None,
    message: str,
    *,
    unique: int | None = None,
    opcode: int | str | None = None,
    related: tuple[int, ...] = (),
) -> None:
    self._emit("FT114", frame, message, unique=unique, opcode=opcode, related=related)


@checks("FT111")
def _request_never_answered(
    self: Tracker,
    frame: int | None,
    message: str,
    *,
    unique: int | None = None,
    opcode: int | str | None = None,
    related: tuple[int, ...] = (),
) -> None:
    self._emit("FT111", frame, message, unique=unique, opcode=opcode, related=related)


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
