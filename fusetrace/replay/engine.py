"""The replay engine: plays the kernel's side of a recorded session against a live daemon.

Sans-IO, in the style of mitmproxy's proxy layers: the engine takes **events** (the driver
started, the daemon wrote a frame, time passed, the daemon went away) and gives back
**commands** (send this frame, wake me at that time, here is a difference, the replay is
over). It opens nothing, reads no clock and never blocks; the driver
(:mod:`fusetrace.replay.driver`) does the I/O, tests feed events by hand.

How the recording is replayed:

* The kernel → daemon frames of the recording become the *script*, in recorded order. INIT
  goes first and alone; its live reply sets the live session.
* Ordering: a frame may be sent once every reply that preceded it in the recording has come
  back live. So requests that were outstanding together in the recording are sent together,
  never more of them than were outstanding then, and an identifier is always learned before a
  later request uses it. ``serial`` sends one request at a time instead. ``speed`` > 0 keeps
  the recorded pacing, scaled (2 = twice as fast).
* FORGET and BATCH_FORGET are sent at their place and not waited for; INTERRUPT only while
  its target is still outstanding live (the kernel never interrupts an answered request);
  NOTIFY_REPLY only in answer to a live RETRIEVE notification (with the recorded data of the
  matching recorded RETRIEVE, or none).
* Identifiers the daemon hands out (node ids, file handles, directory cookies) are learned by
  pairing the recorded and the live reply, and rewritten into later requests.
* Every live reply is compared with the recorded one (:mod:`fusetrace.replay.matching`).
* A request the recording answered but the daemon leaves unanswered for ``timeout_ns`` ends
  the replay (the daemon hangs); one the recording never answered is given up after the
  timeout without complaint.
"""

from __future__ import annotations

import enum
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from fusetrace.errors import CaptureError, DecodeError
from fusetrace.record import Direction, Record
from fusetrace.replay.codec import (
    Codec,
    Dirent,
    IdKind,
    IdRef,
    ReplyBody,
    RequestInfo,
    StepKind,
)
from fusetrace.replay.matching import (
    FieldDiff,
    MatchPolicy,
    compare_bodies,
    compare_errors,
)

INT_BIT = 1  # FUSE_INT_REQ_BIT: an INTERRUPT's unique is its target's | 1


# --------------------------------------------------------------------------- events


@dataclass(frozen=True)
class Start:
    """The daemon is running and holds its end of the socket; ``t_ns`` is now."""

    t_ns: int


@dataclass(frozen=True)
class FrameReceived:
    """The daemon wrote one frame (a reply or a notification)."""

    data: bytes
    t_ns: int


@dataclass(frozen=True)
class Tick:
    """Time passed (a ``WakeAt`` came due, or the driver just wants to check)."""

    t_ns: int


@dataclass(frozen=True)
class DaemonGone:
    """The daemon exited, was killed, or closed its end of the socket."""

    t_ns: int
    reason: str


# --------------------------------------------------------------------------- commands


@dataclass(frozen=True)
class SendFrame:
    """Write ``data`` to the daemon. ``index`` is the recorded frame it replays (None for
    frames the engine made up, such as an empty NOTIFY_REPLY)."""

    data: bytes
    index: int | None

    def __repr__(self) -> str:
        return f"SendFrame(index={self.index}, {len(self.data)} bytes)"


@dataclass(frozen=True)
class WakeAt:
    """Send a :class:`Tick` no later than ``t_ns``."""

    t_ns: int


@dataclass(frozen=True)
class Difference:
    """One way the live daemon answered differently from the recorded one."""

    #: frame index of the request in the recording
    index: int
    opcode: str
    unique: int
    field: str
    recorded: str
    live: str

    def line(self) -> str:
        if self.index < 0:  # a live frame that answers nothing scripted
            return f"live frame: {self.field}: {self.recorded} → {self.live}"
        return (
            f"frame {self.index} {self.opcode} unique {self.unique}: {self.field}: "
            f"{self.recorded} → {self.live}"
        )


@dataclass(frozen=True)
class ReportDifference:
    difference: Difference


@dataclass(frozen=True)
class Note:
    """Something worth telling that is not a difference (a skipped INTERRUPT, ...)."""

    message: str


class Outcome(enum.Enum):
    #: every scripted frame was sent and every answer the recording had came back
    COMPLETED = "completed"
    #: the daemon exited or closed its socket before the end
    DAEMON_GONE = "daemon-gone"
    #: the daemon left a request unanswered for longer than the timeout
    DAEMON_HUNG = "daemon-hung"


@dataclass
class OpStats:
    """Per opcode: how many were sent, answered, differed, and live latencies (ns)."""

    sent: int = 0
    answered: int = 0
    differences: int = 0
    latencies: list[int] = field(default_factory=list)


@dataclass
class ReplayResult:
    outcome: Outcome = Outcome.COMPLETED
    #: why the replay ended early (empty when completed)
    reason: str = ""
    #: the request the daemon died or hung on: (frame index, opcode, unique)
    died_on: tuple[int, str, int] | None = None
    #: requests outstanding live when the replay ended early
    outstanding: list[tuple[int, str, int]] = field(default_factory=list)
    differences: list[Difference] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    script_frames: int = 0
    sent: int = 0
    compared: int = 0
    #: requests neither the recording nor the live daemon answered
    unanswered: int = 0
    skipped: int = 0
    by_opcode: dict[str, OpStats] = field(default_factory=lambda: defaultdict(OpStats))
    recorded_notifications: Counter[str] = field(default_factory=Counter)
    live_notifications: Counter[str] = field(default_factory=Counter)
    started_ns: int = 0
    ended_ns: int = 0

    @property
    def ok(self) -> bool:
        return self.outcome is Outcome.COMPLETED and not self.differences


@dataclass(frozen=True)
class Finish:
    """The replay is over; the driver stops the daemon and reports ``result``."""

    result: ReplayResult


Event = Start | FrameReceived | Tick | DaemonGone
Command = SendFrame | WakeAt | ReportDifference | Note | Finish


@dataclass(frozen=True)
class ReplayOptions:
    serial: bool = False
    #: 0 = as fast as the daemon answers; X > 0 = recorded pacing, X times faster
    speed: float = 0.0
    timeout_ns: int = 10_000_000_000
    policy: MatchPolicy = field(default_factory=MatchPolicy)


# --------------------------------------------------------------------------- the script


@dataclass
class _Step:
    pos: int
    index: int
    t_ns: int
    data: bytes
    info: RequestInfo
    #: number of recorded replies that preceded this frame in the recording
    need: int
    reply: bytes | None = None
    reply_len: int = 0
    reply_index: int | None = None
    sent_ns: int | None = None
    deadline: int | None = None
    done: bool = False


@dataclass
class _Retrieve:
    notify_unique: int
    reply: Record | None = None


class ReplayEngine:
    """Replays ``records`` (a whole recorded session, in capture order) through ``codec``."""

    def __init__(
        self, records: Iterable[Record], codec: Codec, options: ReplayOptions | None = None
    ) -> None:
        self.codec = codec
        self.options = options or ReplayOptions()
        self.result = ReplayResult()
        self._steps: list[_Step] = []
        #: recorded reply order: step positions of answered requests, as the answers came
        self._reply_order: list[int] = []
        self._retrieves: list[_Retrieve] = []
        self._zero_filled = 0
        self._build(records)
        self._rec_session = codec.session(self._steps[0].data, self._steps[0].reply)
        self._live_session: Any = None
        self._next = 0
        self._prefix = 0  # how many of _reply_order are resolved live
        self._resolved: set[int] = set()
        self._outstanding: dict[int, _Step] = {}
        self._live_retrieves = 0
        self._t0_live = 0
        self._t0_rec = self._steps[0].t_ns
        self._finished = False
        # recorded -> live identifiers
        self._nodeids: dict[int, int] = {}
        self._nodeids_back: dict[int, int] = {}
        self._lookups: Counter[int] = Counter()
        self._fhs: dict[int, int] = {}
        self._cookies: dict[tuple[int, int], int] = {}
        self.result.script_frames = len(self._steps)

    # ----------------------------------------------------------------- building the script

    def _build(self, records: Iterable[Record]) -> None:
        pending: dict[int, _Step] = {}
        interrupts: dict[int, _Step] = {}
        by_notify_unique: dict[int, _Retrieve] = {}
        for rec in records:
            if rec.direction is Direction.INBOUND:
                try:
                    info = self.codec.request_info(rec.data)
                except DecodeError as e:
                    self.result.notes.append(f"frame {rec.index}: not replayed: {e}")
                    continue
                if not self._steps and info.kind is not StepKind.INIT:
                    raise CaptureError(
                        f"frame {rec.index}: the capture does not start with INIT "
                        f"but with {info.name}; replay needs a whole session"
                    )
                if info.kind is StepKind.NOTIFY_REPLY:
                    r = by_notify_unique.pop(info.unique, None)
                    if r is not None:
                        r.reply = rec
                    continue
                if info.kind is StepKind.INIT and self._steps:
                    self.result.notes.append(f"frame {rec.index}: second INIT not replayed")
                    continue
                data = rec.data
                if rec.truncated:
                    # the snap length cut the frame (file data): send it whole, zero-filled
                    data = data + bytes(rec.orig_len - len(data))
                    self._zero_filled += 1
                step = _Step(
                    len(self._steps), rec.index, rec.t_ns, data, info, len(self._reply_order)
                )
                self._steps.append(step)
                if info.kind in (StepKind.REQUEST, StepKind.INIT):
                    pending[info.unique] = step
                elif info.kind is StepKind.INTERRUPT:
                    interrupts[info.unique] = step
            else:
                try:
                    out = self.codec.reply_info(rec.data)
                except DecodeError as e:
                    self.result.notes.append(f"frame {rec.index}: unreadable reply: {e}")
                    continue
                if out.unique == 0:
                    self.result.recorded_notifications[out.notify_name] += 1
                    if out.retrieve is not None:
                        r = _Retrieve(out.retrieve[0])
                        self._retrieves.append(r)
                        by_notify_unique[r.notify_unique] = r
                    continue
                step_or_none = pending.pop(out.unique, None)
                if step_or_none is None:
                    istep = interrupts.pop(out.unique, None)
                    if istep is not None:
                        istep.reply = rec.data
                        istep.reply_index = rec.index
                    continue
                step_or_none.reply = rec.data
                step_or_none.reply_len = rec.orig_len
                step_or_none.reply_index = rec.index
                self._reply_order.append(step_or_none.pos)
        if self._zero_filled:
            self.result.notes.append(
                f"{self._zero_filled} requests were cut by the capture's snap length; "
                "they are replayed with their missing bytes zero-filled"
            )
        if not self._steps:
            raise CaptureError("the capture holds no requests to replay")
        if self._steps[0].reply is None:
            raise CaptureError(
                f"frame {self._steps[0].index}: the recorded INIT was never answered; "
                "nothing to replay"
            )

    # ----------------------------------------------------------------- public entry point

    def handle(self, event: Event) -> list[Command]:
        """Feed one event; returns the commands to carry out, in order."""
        if self._finished:
            return []
        out: list[Command] = []
        if isinstance(event, Start):
            self._t0_live = event.t_ns
            self.result.started_ns = event.t_ns
        elif isinstance(event, FrameReceived):
            self._on_frame(event, out)
        elif isinstance(event, DaemonGone):
            self._end_early(Outcome.DAEMON_GONE, event.reason, event.t_ns, out)
            return out
        elif isinstance(event, Tick):
            self._check_timeouts(event.t_ns, out)
            if self._finished:
                return out
        self._pump(event.t_ns, out)
        return out

    # ----------------------------------------------------------------- sending

    def _ready(self, step: _Step) -> bool:
        if self._live_session is None and step.pos > 0:
            return False  # nothing but INIT before the INIT reply, as in the kernel
        if step.info.kind is StepKind.INTERRUPT:
            # even when serial: it goes out while its target is outstanding (or is skipped)
            return self._prefix >= step.need
        if self.options.serial:
            return not self._outstanding
        return self._prefix >= step.need

    def _pump(self, now: int, out: list[Command]) -> None:
        while self._next < len(self._steps):
            step = self._steps[self._next]
            if not self._ready(step):
                break
            if self.options.speed > 0:
                due = self._t0_live + int((step.t_ns - self._t0_rec) / self.options.speed)
                if now < due:
                    out.append(WakeAt(due))
                    break
            self._next += 1
            self._send(step, now, out)
        if self._next >= len(self._steps) and not self._outstanding:
            self._finish(Outcome.COMPLETED, "", now, out)
            return
        deadlines = [s.deadline for s in self._outstanding.values() if s.deadline is not None]
        if deadlines:
            out.append(WakeAt(min(deadlines)))

    def _send(self, step: _Step, now: int, out: list[Command]) -> None:
        kind = step.info.kind
        stats = self.result.by_opcode[step.info.name]
        if kind is StepKind.INTERRUPT:
            target = step.info.target
            if target is None or target not in self._outstanding:
                self._skip(step, "its target was already answered live", out)
                return
        data = self._rewrite(step)
        if kind in (StepKind.REQUEST, StepKind.INIT):
            if step.info.unique in self._outstanding:
                self._skip(step, "its unique is still outstanding live", out)
                return
            step.sent_ns = now
            step.deadline = now + self.options.timeout_ns
            self._outstanding[step.info.unique] = step
        else:
            step.done = True
            if kind is StepKind.NO_REPLY:
                self._apply_forgets(step)
        stats.sent += 1
        self.result.sent += 1
        out.append(SendFrame(data, step.index))

    def _skip(self, step: _Step, why: str, out: list[Command]) -> None:
        step.done = True
        self.result.skipped += 1
        msg = f"frame {step.index} {step.info.name} unique {step.info.unique} not sent: {why}"
        self.result.notes.append(msg)
        out.append(Note(msg))
        if step.reply_index is not None:
            self._resolve(step)

    def _rewrite(self, step: _Step) -> bytes:
        if step.pos == 0:
            return step.data
        refs = self.codec.request_ids(step.data, self._rec_session)
        rec_fh = next((r.value for r in refs if r.kind is IdKind.FH), None)
        changes: list[tuple[IdRef, int]] = []
        for ref in refs:
            live = self._map(ref, rec_fh)
            if live != ref.value:
                changes.append((ref, live))
        if not changes:
            return step.data
        return self.codec.patch(step.data, changes, self._rec_session)

    def _map(self, ref: IdRef, rec_fh: int | None) -> int:
        if ref.kind is IdKind.NODEID:
            return self._nodeids.get(ref.value, ref.value)
        if ref.kind is IdKind.FH:
            return self._fhs.get(ref.value, ref.value)
        if ref.value == 0 or rec_fh is None:
            return ref.value
        return self._cookies.get((rec_fh, ref.value), ref.value)

    def _apply_forgets(self, step: _Step) -> None:
        for nodeid, nlookup in self.codec.forget_counts(step.data, self._rec_session):
            left = self._lookups[nodeid] - nlookup
            if left > 0:
                self._lookups[nodeid] = left
                continue
            self._lookups.pop(nodeid, None)
            live = self._nodeids.pop(nodeid, None)
            if live is not None and self._nodeids_back.get(live) == nodeid:
                del self._nodeids_back[live]

    # ----------------------------------------------------------------- receiving

    def _on_frame(self, event: FrameReceived, out: list[Command]) -> None:
        try:
            info = self.codec.reply_info(event.data)
        except DecodeError as e:
            self._difference(None, "frame", "(a reply)", f"unreadable: {e}", out)
            return
        if info.unique == 0:
            self.result.live_notifications[info.notify_name] += 1
            if info.retrieve is not None:
                self._answer_retrieve(info.retrieve, out)
            return
        step = self._outstanding.pop(info.unique, None)
        if step is None:
            if info.unique & INT_BIT and (info.unique & ~INT_BIT) in self._outstanding:
                return  # an answer to an INTERRUPT: optional, nothing to compare
            if info.unique & INT_BIT:
                return  # INTERRUPT answered after its target: normal (protocol.md §5.4)
            msg = f"reply to unique {info.unique}, which is not outstanding"
            self.result.notes.append(msg)
            self._difference(None, "unique", "(no such request)", str(info.unique), out)
            return
        stats = self.result.by_opcode[step.info.name]
        stats.answered += 1
        if step.sent_ns is not None:
            stats.latencies.append(event.t_ns - step.sent_ns)
        if step.info.kind is StepKind.INIT:
            self._live_session = self.codec.session(step.data, event.data)
        if step.reply is None:
            self.result.notes.append(
                f"frame {step.index} {step.info.name} unique {step.info.unique}: "
                "answered live, unanswered in the recording"
            )
        else:
            self.result.compared += 1
            self._compare(step, event.data, out)
        step.done = True
        self._resolve(step)

    def _resolve(self, step: _Step) -> None:
        self._resolved.add(step.pos)
        order = self._reply_order
        while self._prefix < len(order) and order[self._prefix] in self._resolved:
            self._prefix += 1

    def _answer_retrieve(self, retrieve: tuple[int, int, int, int], out: list[Command]) -> None:
        notify_unique, nodeid, offset, _size = retrieve
        k = self._live_retrieves
        self._live_retrieves += 1
        recorded = self._retrieves[k].reply if k < len(self._retrieves) else None
        if recorded is not None:
            data = self.codec.notify_reply_like(recorded.data, notify_unique, nodeid)
            out.append(SendFrame(data, recorded.index))
        else:
            out.append(SendFrame(self.codec.notify_reply(notify_unique, nodeid, offset, b""), None))

    # ----------------------------------------------------------------- comparing

    def _compare(self, step: _Step, live_data: bytes, out: list[Command]) -> None:
        assert step.reply is not None
        rec_info = self.codec.reply_info(step.reply)
        live_info = self.codec.reply_info(live_data)
        diffs = compare_errors(rec_info.error, live_info.error)
        if not diffs and rec_info.error == 0:
            rec = self.codec.decode_reply(step.reply, step.data, self._rec_session)
            live = self.codec.decode_reply(live_data, step.data, self._live_session)
            cut = step.reply_len if step.reply_len > len(step.reply) else None
            recorded_len = None if cut is None else cut - 16
            mapped = {p for _, p, _ in rec.ids} | {p for _, p, _ in live.ids}
            diffs = compare_bodies(
                self.options.policy, rec, live, mapped=mapped, recorded_len=recorded_len
            )
            diffs += self._learn(step, rec, live)
        for d in diffs:
            self._difference(step, d.field, d.recorded, d.live, out)

    def _learn(self, step: _Step, rec: ReplyBody, live: ReplyBody) -> list[FieldDiff]:
        diffs: list[FieldDiff] = []
        live_ids = {(kind, path): value for kind, path, value in live.ids}
        for kind, path, value in rec.ids:
            lv = live_ids.get((kind, path))
            if lv is None:
                continue
            if kind is IdKind.NODEID:
                diffs += self._learn_nodeid(path, value, lv)
            elif kind is IdKind.FH:
                self._fhs[value] = lv
        if rec.dirents is not None and live.dirents is not None:
            diffs += self._learn_dirents(step, rec.dirents, live.dirents)
        return diffs

    def _learn_nodeid(self, path: str, rec: int, live: int) -> list[FieldDiff]:
        if rec == 0 or live == 0:
            if (rec == 0) != (live == 0):
                return [FieldDiff(path, str(rec), str(live))]
            return []
        diffs: list[FieldDiff] = []
        known = self._nodeids.get(rec)
        if known is not None and known != live:
            diffs.append(
                FieldDiff(path, f"{rec} (live {known} so far)", f"{live}: another node id")
            )
        other = self._nodeids_back.get(live)
        if other is not None and other != rec:
            diffs.append(
                FieldDiff(path, f"{rec}", f"{live}, already the live id of recorded {other}")
            )
        self._nodeids[rec] = live
        self._nodeids_back[live] = rec
        self._lookups[rec] += 1
        return diffs

    def _learn_dirents(self, step: _Step, rec: list[Dirent], live: list[Dirent]) -> list[FieldDiff]:
        diffs: list[FieldDiff] = []
        refs = self.codec.request_ids(step.data, self._rec_session)
        rec_fh = next((r.value for r in refs if r.kind is IdKind.FH), None)
        by_name = {d.name: d for d in live}
        for d in rec:
            ld = by_name.get(d.name)
            if ld is None:
                continue
            if rec_fh is not None:
                self._cookies[(rec_fh, d.cookie)] = ld.cookie
            if d.nodeid is not None and ld.nodeid is not None and d.name not in (b".", b".."):
                name = d.name.decode("utf-8", "backslashreplace")
                diffs += self._learn_nodeid(f"entries[{name}].nodeid", d.nodeid, ld.nodeid)
        return diffs

    def _difference(
        self, step: _Step | None, fieldname: str, recorded: str, live: str, out: list[Command]
    ) -> None:
        if step is None:
            d = Difference(-1, "?", 0, fieldname, recorded, live)
        else:
            d = Difference(step.index, step.info.name, step.info.unique, fieldname, recorded, live)
            self.result.by_opcode[step.info.name].differences += 1
        self.result.differences.append(d)
        out.append(ReportDifference(d))

    # ----------------------------------------------------------------- ending

    def _check_timeouts(self, now: int, out: list[Command]) -> None:
        for unique, step in list(self._outstanding.items()):
            if step.deadline is None or now < step.deadline:
                continue
            if step.reply is not None:
                self._end_early(
                    Outcome.DAEMON_HUNG,
                    f"no reply to frame {step.index} {step.info.name} (unique "
                    f"{step.info.unique}) within {self.options.timeout_ns / 1e9:g} s",
                    now,
                    out,
                    step,
                )
                return
            del self._outstanding[unique]
            step.done = True
            self.result.unanswered += 1
            self._resolve(step)

    def _end_early(
        self,
        outcome: Outcome,
        reason: str,
        now: int,
        out: list[Command],
        culprit: _Step | None = None,
    ) -> None:
        if self._next >= len(self._steps) and not any(
            s.reply is not None for s in self._outstanding.values()
        ):
            # everything was sent and answered: the daemon ending now is its normal end
            self.result.unanswered += len(self._outstanding)
            self._finish(Outcome.COMPLETED, "", now, out)
            return
        live = sorted(self._outstanding.values(), key=lambda s: s.pos)
        if culprit is None:
            culprit = next((s for s in live if s.reply is not None), None)
        if culprit is None and self._next > 0:
            culprit = self._steps[self._next - 1]
        r = self.result
        r.outstanding = [(s.index, s.info.name, s.info.unique) for s in live]
        if culprit is not None:
            r.died_on = (culprit.index, culprit.info.name, culprit.info.unique)
        self._finish(outcome, reason, now, out)

    def _finish(self, outcome: Outcome, reason: str, now: int, out: list[Command]) -> None:
        self._finished = True
        self.result.outcome = outcome
        self.result.reason = reason
        self.result.ended_ns = now
        out.append(Finish(self.result))

    @property
    def finished(self) -> bool:
        return self._finished
