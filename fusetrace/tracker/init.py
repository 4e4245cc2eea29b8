"""The tracker's FT4: INIT and versions (design.md §5).

Functions here are methods of :class:`fusetrace.tracker.machine.Tracker` (bound in its
class body); each raises only its family's rule codes (``@checks``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fusetrace.frame import Frame
from fusetrace.protocol.abi import (
    FUSE_INT_REQ_BIT,
    FUSE_MIN_MAX_WRITE,
    InitFlag,
    Opcode,
    opcode_name,
)
from fusetrace.protocol.header import OUT_HEADER_SIZE
from fusetrace.tracker.rules import checks
from fusetrace.tracker.state import (
    Pending,
    SessionEvent,
    SessionState,
    _flag_names,
)

if TYPE_CHECKING:
    from fusetrace.tracker.machine import Tracker


@checks("FT402")
def _before_init(self: Tracker, idx: int, unique: int, opcode: int) -> None:
    if self._early_reported:
        return
    self._early_reported = True
    self._emit(
        "FT402",
        idx,
        f"{opcode_name(opcode)} arrives before INIT was answered (further ones not reported)",
        unique=unique,
        opcode=opcode,
    )


@checks("FT412")
def _init_request(self: Tracker, rec: Frame, unique: int, opcode: int, data: bytes) -> None:
    idx = rec.index
    if self._init_seen:
        self._emit(
            "FT412",
            idx,
            f"second {opcode_name(opcode)} on the connection",
            unique=unique,
            opcode=opcode,
        )
        return
    self._init_seen = True
    self._init_key = unique & ~FUSE_INT_REQ_BIT
    self._init_frame = idx
    self._init_id(idx, unique, opcode)
    self._transition(SessionEvent.INIT_REQUEST)
    if opcode == Opcode.INIT:
        self._len_rules.clear()  # the connection learnt the kernel's side


@checks("FT404")
def _init_failed(
    self: Tracker, idx: int, unique: int, opcode: int, pend: Pending, error: int
) -> None:
    self._emit(
        "FT404",
        idx,
        f"{opcode_name(opcode)} answered with error {error}: every later "
        "request fails with ECONNREFUSED",
        unique=unique,
        opcode=opcode,
        related=(pend.frame,),
    )
    self._len_rules.clear()  # the connection marked the session failed
    self._transition(SessionEvent.INIT_REPLY_BAD)


@checks("FT403", "FT405", "FT406", "FT407", "FT408", "FT409", "FT410", "FT411")
def _init_reply(self: Tracker, rec: Frame, unique: int, pend: Pending) -> None:
    idx = rec.index
    opcode = pend.opcode
    if opcode == Opcode.CUSE_INIT:
        self._transition(SessionEvent.INIT_REPLY_OK)
        return
    out = self._f.init_out(rec.data[OUT_HEADER_SIZE:])
    before = self._before
    neg = self.negotiated  # the connection learnt it from this reply
    self._len_rules.clear()
    rel = (pend.frame,)
    if out["major"] != 7:
        self._emit(
            "FT403",
            idx,
            f"INIT reply major {out['major']}, not 7: INIT fails and every "
            "request gets ECONNREFUSED",
            unique=unique,
            opcode=opcode,
            related=rel,
        )
        self._transition(SessionEvent.INIT_REPLY_BAD)
        return
    self._transition(SessionEvent.INIT_REPLY_OK)
    if out["minor"] > before.kernel_minor:
        self._emit(
            "FT406",
            idx,
            f"INIT reply minor 7.{out['minor']} above the kernel's 7.{before.kernel_minor}",
            unique=unique,
            opcode=opcode,
            related=rel,
        )
    if out["minor"] >= 6:
        ext = bool(out["flags"] & InitFlag.INIT_EXT)
        if out["flags2"] and not ext:
            self._emit(
                "FT407",
                idx,
                f"INIT reply flags2 {out['flags2']:#x} without INIT_EXT: the kernel ignores them",
                unique=unique,
                opcode=opcode,
                related=rel,
            )
        extra = neg.flags & ~before.offered
        if extra:
            names = ", ".join(_flag_names(extra))
            self._emit(
                "FT405",
                idx,
                f"INIT reply accepts flags the kernel did not offer: {names}",
                unique=unique,
                opcode=opcode,
                related=rel,
            )
    if out["minor"] >= 5 and out["max_write"] < FUSE_MIN_MAX_WRITE:
        self._emit(
            "FT408",
            idx,
            f"max_write {out['max_write']} below 4096 (the kernel uses 4096)",
            unique=unique,
            opcode=opcode,
            related=rel,
        )
    if neg.flags & InitFlag.MAX_PAGES and out["max_pages"] == 0:
        self._emit(
            "FT409",
            idx,
            "MAX_PAGES accepted with max_pages 0",
            unique=unique,
            opcode=opcode,
            related=rel,
        )
    if (
        neg.flags & InitFlag.ALLOW_IDMAP
        and self.mount_options is not None
        and "default_permissions" not in self.mount_options
    ):
        self._emit(
            "FT410",
            idx,
            "ALLOW_IDMAP accepted but the mount has no default_permissions: INIT fails",
            unique=unique,
            opcode=opcode,
            related=rel,
        )
    if neg.flags & InitFlag.PASSTHROUGH:
        why = []
        if neg.flags & InitFlag.WRITEBACK_CACHE:
            why.append("WRITEBACK_CACHE is also set")
        if not 1 <= out["max_stack_depth"] <= 2:
            why.append(f"max_stack_depth is {out['max_stack_depth']}, not 1..2")
        if why:
            self._emit(
                "FT411",
                idx,
                "PASSTHROUGH is disabled: " + " and ".join(why),
                unique=unique,
                opcode=opcode,
                related=rel,
            )


@checks("FT401")
def _reply_before_init(self: Tracker, idx: int, unique: int, key: int) -> bool:
    """A reply (not INIT's) before INIT is answered: the kernel cannot match it (ENOENT).
    True when it is one."""
    state = self.state
    if state is not SessionState.AWAIT_INIT_REPLY and state is not SessionState.UNINIT:
        return False
    if key == self._init_key:
        return False
    self._emit(
        "FT401",
        idx,
        f"reply to id {unique} before the INIT reply (ENOENT)",
        unique=unique,
    )
    return True
