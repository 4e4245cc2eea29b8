"""The replay engine: plays the kernel's side of a recorded session against a live daemon.

Sans-IO, in the style of mitmproxy's proxy layers: the engine takes **events** (the driver
started, the daemon wrote a frame, time passed, the daemon went away) and gives back
**commands** (send this frame, wake me at that time, the replay is over). It opens nothing,
reads no clock and never blocks; the driver (:mod:`fusetrace.replay.driver`) does the I/O,
tests feed events by hand.

How the recording is replayed:

* The recording is read as the replay goes (a window of frames read ahead, never the whole
  capture): memory does not grow with its length.
* The kernel → daemon frames become the *script*, in recorded order. INIT goes first and
  alone; its live reply sets the live session.
* Ordering: a frame may be sent once every reply that preceded it in the recording has come
  back live. So requests that were outstanding together in the recording are sent together,
  never more of them than were outstanding then, and an identifier is always learned before a
  later request uses it. ``serial`` sends one request at a time instead. ``speed`` > 0 keeps
  the recorded pacing, scaled (2 = twice as fast).
* Identifiers the daemon hands out (node ids, file and directory handles, directory cookies)
  are learned by pairing the recorded and the live reply, and rewritten into later requests.
* Acting like the kernel when the daemon diverges: a request that names an identifier the
  live daemon did not give (its LOOKUP failed, its OPEN failed, its directory entry is not
  listed live), or that was forgotten since, is **not sent**. It is counted as a dependent of
  the frame where the live daemon first answered differently (its *root*), and whatever it
  would have handed out is unknown in turn (a skipped OPEN makes its READs and RELEASE skip).
  FORGET and BATCH_FORGET counts follow what the live daemon actually handed out.
* FORGET and BATCH_FORGET are sent at their place and not waited for; INTERRUPT only while
  its target is still outstanding live; NOTIFY_REPLY only in answer to a live RETRIEVE.
* Every live reply is compared with the recorded one (:mod:`fusetrace.replay.matching`);
  directory listings are compared as a whole listing (all the READDIRs of one handle from
  offset 0), as sets of (name, type) unless the policy is strict.
* A request the recording answered but the daemon leaves unanswered for ``timeout_ns`` ends
  the replay (the daemon hangs); one the recording never answered is given up after the
  timeout without complaint.
"""

from __future__ import annotations

import dataclasses
import enum
from collections import Counter, defaultdict, deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from fusetrace.errors import CaptureError, DecodeError
from fusetrace.frame import Direction, Frame
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
    compare_listing,
    error_name,
)

INT_BIT = 1  # FUSE_INT_REQ_BIT: an INTERRUPT's unique is its target's | 1
#: notes kept word for word; later ones are only counted
MAX_NOTES = 200
#: how many recorded frames may be read ahead looking for one recorded reply
READ_AHEAD = 65536


# --------------------------------------------------------------------------- events


@dataclass(frozen=True)
class Start:
    """The daemon is running and holds its end of the socket; ``t_ns`` is now."""

    t_ns: int


@dataclass(slots=True)  # not frozen: made for every frame
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


@dataclass(slots=True)  # not frozen: made for every frame
class SendFrame:
    """Write ``data`` to the daemon. ``index`` is the recorded frame it replays (0-based
    position; None for frames the engine made up, such as an empty NOTIFY_REPLY)."""

    data: bytes
    index: int | None

    def __repr__(self) -> str:
        return f"SendFrame(index={self.index}, {len(self.data)} bytes)"


@dataclass(frozen=True)
class WakeAt:
    """Send a :class:`Tick` no later than ``t_ns``."""

    t_ns: int


def _counts(c: Counter[str]) -> str:
    return ", ".join(k if n == 1 else f"{k} ×{n}" for k, n in c.most_common())  # noqa: RUF001


@dataclass
class Difference:
    """One way the live daemon answered differently from the recorded one.

    ``dependents`` counts, per opcode, the later requests that were not sent because they
    named an identifier this difference left unknown (one root cause, one difference)."""

    #: the request's frame number in the recording (from 1, as Wireshark counts)
    frame: int
    opcode: str
    unique: int
    field: str
    recorded: str
    live: str
    #: the names the request carries, quoted ('"one"'), if any
    label: str = ""
    dependents: Counter[str] = dataclasses.field(default_factory=Counter)
    #: later frames where the same request failed the same way (told here, not again)
    again: list[int] = dataclasses.field(default_factory=list)

    @property
    def index(self) -> int:
        """0-based position of the request in the recording (-1: a live frame)."""
        return self.frame - 1

    @property
    def not_sent(self) -> int:
        return sum(self.dependents.values())

    def line(self) -> str:
        if self.frame <= 0:  # a live frame that answers nothing scripted
            return f"live frame: {self.field}: {self.recorded} → {self.live}"
        what = f"frame {self.frame} {self.opcode}" + (f" {self.label}" if self.label else "")
        if self.field == "error":
            text = f"{what}: recorded {self.recorded}, live {self.live}"
        else:
            text = f"{what}: {self.field}: recorded {self.recorded}, live {self.live}"
        if self.again:
            shown = ", ".join(map(str, self.again[:5])) + (", …" if len(self.again) > 5 else "")
            text += f" (again at frame{'s' if len(self.again) > 1 else ''} {shown})"
        if self.dependents:
            n = self.not_sent
            text += (
                f"; {n} later request{'s' if n != 1 else ''} not sent ({_counts(self.dependents)})"
            )
        return text

    def to_dict(self) -> dict[str, Any]:
        return {
            "frame": self.frame,
            "opcode": self.opcode,
            "unique": self.unique,
            "label": self.label,
            "field": self.field,
            "recorded": self.recorded,
            "live": self.live,
            "not_sent": self.not_sent,
            "dependents": dict(self.dependents.most_common()),
            "again": self.again,
        }


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


class Latencies:
    """Live latencies of one opcode in bounded memory: every ``stride``-th sample is kept
    (the stride doubles whenever the sample is full), count and maximum are exact."""

    LIMIT = 4096

    def __init__(self) -> None:
        self.samples: list[int] = []
        self.count = 0
        self.max = 0
        self._stride = 1

    def append(self, ns: int) -> None:
        if self.count % self._stride == 0:
            self.samples.append(ns)
            if len(self.samples) >= self.LIMIT:
                self.samples = self.samples[::2]
                self._stride *= 2
        self.count += 1
        self.max = max(self.max, ns)

    def __len__(self) -> int:
        return self.count

    def __bool__(self) -> bool:
        return self.count > 0


@dataclass
class OpStats:
    """Per opcode: how many were sent, answered, differed, not sent, and live latencies."""

    sent: int = 0
    answered: int = 0
    differences: int = 0
    not_sent: int = 0
    latencies: Latencies = field(default_factory=Latencies)


@dataclass
class ReplayResult:
    outcome: Outcome = Outcome.COMPLETED
    #: why the replay ended early (empty when completed)
    reason: str = ""
    #: the request the daemon died or hung on: (frame number, opcode, unique)
    died_on: tuple[int, str, int] | None = None
    #: requests outstanding live when the replay ended early
    outstanding: list[tuple[int, str, int]] = field(default_factory=list)
    differences: list[Difference] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    #: notes past MAX_NOTES, only counted
    notes_dropped: int = 0
    script_frames: int = 0
    sent: int = 0
    compared: int = 0
    #: requests neither the recording nor the live daemon answered
    unanswered: int = 0
    #: frames not sent for reasons that are no difference (INTERRUPT of an answered request)
    skipped: int = 0
    #: requests not sent because they depend on a difference (see Difference.dependents)
    not_sent: int = 0
    by_opcode: dict[str, OpStats] = field(default_factory=lambda: defaultdict(OpStats))
    recorded_notifications: Counter[str] = field(default_factory=Counter)
    live_notifications: Counter[str] = field(default_factory=Counter)
    started_ns: int = 0
    ended_ns: int = 0

    @property
    def ok(self) -> bool:
        return self.outcome is Outcome.COMPLETED and not self.differences

    def note(self, message: str) -> None:
        if len(self.notes) < MAX_NOTES:
            self.notes.append(message)
        else:
            self.notes_dropped += 1


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
    #: how many frames ahead a read-only request may be sent before its turn (``speed`` 0,
    #: not ``serial``); 0 keeps the recorded order exactly
    window: int = 16


# --------------------------------------------------------------------------- the script


class _Live(enum.Enum):
    """What became of a request live, besides a reply."""

    #: not sent: it depends on a difference (``_Step.root``)
    NOT_SENT = "not-sent"
    #: sent, never answered (given up after the timeout, the recording did not answer either)
    NONE = "none"


@dataclass(eq=False, slots=True)
class _Step:
    index: int
    t_ns: int
    data: bytes
    info: RequestInfo
    #: number of recorded replies that preceded this frame in the recording
    need: int
    reply: bytes | None = None
    #: the recorded reply's error field (read once, with the reply)
    rec_err: int = 0
    reply_len: int = 0
    reply_index: int | None = None
    #: position of the recorded reply among all recorded replies (None: not read yet)
    reply_seq: int | None = None
    #: the live outcome: a reply frame, _Live, or None while unknown
    live: bytes | _Live | None = None
    #: the difference a NOT_SENT step depends on (None: a reason that is no difference)
    root: Difference | None = None
    sent_ns: int | None = None
    deadline: int | None = None
    #: the request as sent (ids rewritten), for decoding the live reply
    sent_data: bytes = b""
    #: the ids the request names (decoded once)
    refs: list[IdRef] | None = None
    #: the node ids it names; what it ends or changes (node ids, handles) when passed
    own: frozenset[int] | None = None
    passed: tuple[frozenset[int], frozenset[tuple[int, int]]] | None = None
    #: what the window may do with it: one of the _C_* classes below
    cls: int = 0
    settled: bool = False

    @property
    def number(self) -> int:
        return self.index + 1


@dataclass
class _Retrieve:
    notify_unique: int
    reply: Frame | None = None


@dataclass
class _Node:
    """A recorded node id: what the live daemon gave for it, and the lookup counts."""

    live: int | None
    rec_count: int = 0
    live_count: int = 0
    #: why the live daemon did not give it (None while live is known)
    root: Difference | None = None


HandleKey = tuple[int, int, bool]  # (recorded nodeid, recorded fh, directory handle)


@dataclass
class _Handle:
    live: int | None
    refs: int = 0
    #: opens of this key that failed live (their uses and RELEASE are not sent)
    failed: int = 0
    root: Difference | None = None


@dataclass
class _Listing:
    """One directory listing: the READDIR(PLUS)s of a handle from offset 0 on."""

    step_number: int
    opcode: str
    unique: int
    label: str
    rec: list[Dirent] = field(default_factory=list)
    live: list[Dirent] = field(default_factory=list)
    #: recorded cookie -> entry name; entry name -> live cookie
    rec_cookies: dict[int, bytes] = field(default_factory=dict)
    live_cookies: dict[bytes, int] = field(default_factory=dict)
    #: the cookies of the last entry of the last recorded and live replies: a continuation
    #: after the last recorded entry continues after the last live one, as the kernel would
    last_rec: int | None = None
    last_live: int | None = None
    #: a chunk was not sent or failed live: the listing is not compared
    broken: bool = False
    #: the difference a continuation depends on when its cookie names no live entry
    root: Difference | None = None


#: a successful reply that hands out nothing (not decoded when equal to the recorded one)
_NO_IDS = ReplyBody()


#: requests that change nothing another request sees (only lookup counts and open handles,
#: which are per id): they commute with each other, so one may go before its turn
_READ_ONLY = frozenset(
    {"LOOKUP", "GETATTR", "STATX", "READ", "READLINK", "GETXATTR", "LISTXATTR", "STATFS",
     "ACCESS", "LSEEK", "BMAP"}
)  # fmt: skip
#: requests that end or flush one id: a read-only request naming other ids may pass them
_PASSABLE = frozenset({"RELEASE", "RELEASEDIR", "FLUSH", "FORGET", "BATCH_FORGET"})
_OPENS = frozenset({"OPEN", "OPENDIR"})
#: the window's classes of a frame: read-only, passable, an open, any other request, and
#: frames that are no request (INTERRUPT, NOTIFY_REPLY, ...)
_C_READ_ONLY, _C_PASSABLE, _C_OPEN, _C_OTHER, _C_NOT_REQUEST = range(5)


_CLASSES: dict[tuple[str, StepKind], int] = {}


def _window_class(info: RequestInfo) -> int:
    key = (info.name, info.kind)
    c = _CLASSES.get(key)
    if c is None:
        c = _CLASSES[key] = _classify(info)
    return c


def _classify(info: RequestInfo) -> int:
    if info.name in _PASSABLE:
        return _C_PASSABLE
    if info.kind is not StepKind.REQUEST:
        return _C_NOT_REQUEST
    if info.name in _OPENS:
        return _C_OPEN
    return _C_READ_ONLY if info.name in _READ_ONLY else _C_OTHER


class _Blocked(Exception):
    def __init__(self, root: Difference | None, why: str) -> None:
        self.root = root
        self.why = why


class ReplayEngine:
    """Replays ``records`` (a whole recorded session, in capture order) through ``codec``.

    ``records`` is consumed as the replay goes; it may be a generator over a capture file.
    """

    def __init__(
        self, records: Iterable[Frame], codec: Codec, options: ReplayOptions | None = None
    ) -> None:
        self.codec = codec
        self.options = options or ReplayOptions()
        self.result = ReplayResult()
        self._source: Iterator[Frame] | None = iter(records)
        #: steps read but not yet sent, in recorded order
        self._window: deque[_Step] = deque()
        #: recorded requests whose recorded reply is not read yet, by unique
        self._pending: dict[int, _Step] = {}
        self._by_notify_unique: dict[int, _Retrieve] = {}
        self._retrieves: deque[_Retrieve] = deque()
        self._replies_read = 0
        self._resolved: set[int] = set()
        self._prefix = 0  # recorded replies 0.._prefix-1 are all resolved live
        self._outstanding: dict[int, _Step] = {}
        self._live_retrieves = 0
        self._zero_filled = 0
        self._finished = False
        self._first: _Step | None = None
        self._sent_any = False
        self._last_sent: _Step | None = None
        # recorded -> live identifiers
        self._nodes: dict[int, _Node] = {1: _Node(1)}
        self._live_owner: dict[int, int] = {}
        self._handles: dict[HandleKey, _Handle] = {}
        self._listings: dict[HandleKey, _Listing] = {}
        self._repeated: dict[tuple[int, int, str, int, int], Difference] = {}
        self._rec_session: Any = None
        self._live_session: Any = None
        self._t0_live = 0
        self._t0_rec = 0
        # read up to the INIT reply: it sets the recorded session
        while self._first is None or self._first.reply is None:
            if not self._read_one():
                break
        if self._first is None:
            raise CaptureError("the capture holds no requests to replay")
        if self._first.reply is None:
            raise CaptureError(
                f"frame {self._first.number}: the recorded INIT was never answered; "
                "nothing to replay"
            )
        self._t0_rec = self._first.t_ns
        self._rec_session = codec.session(self._first.data, self._first.reply)

    # ----------------------------------------------------------------- reading the script

    def _read_one(self) -> bool:
        """Read one recorded frame into the window; False at the end of the capture."""
        if self._source is None:
            return False
        rec = next(self._source, None)
        if rec is None:
            self._source = None
            self._at_end()
            return False
        if rec.direction is Direction.INBOUND:
            self._read_request(rec)
        else:
            self._read_reply(rec)
        return True

    def _read_request(self, rec: Frame) -> None:
        try:
            info = self.codec.request_info(rec.data)
        except DecodeError as e:
            self.result.note(f"frame {rec.number}: not replayed: {e}")
            return
        if self._first is None and info.kind is not StepKind.INIT:
            raise CaptureError(
                f"frame {rec.number}: the capture does not start with INIT "
                f"but with {info.name}; replay needs a whole session"
            )
        if info.kind is StepKind.NOTIFY_REPLY:
            r = self._by_notify_unique.pop(info.unique, None)
            if r is not None:
                r.reply = rec
            return
        if info.kind is StepKind.INIT and self._first is not None:
            self.result.note(f"frame {rec.number}: second INIT not replayed")
            return
        data = rec.data
        if rec.truncated:
            # the snap length cut the frame (file data): send it whole, zero-filled
            data = data + bytes(rec.orig_len - len(data))
            self._zero_filled += 1
        step = _Step(rec.index, rec.t_ns, data, info, self._replies_read)
        step.cls = _window_class(info)
        if self._first is None:
            self._first = step
        self._window.append(step)
        self.result.script_frames += 1
        if info.kind in (StepKind.REQUEST, StepKind.INIT):
            self._pending[info.unique] = step

    def _read_reply(self, rec: Frame) -> None:
        try:
            out = self.codec.reply_info(rec.data)
        except DecodeError as e:
            self.result.note(f"frame {rec.number}: unreadable reply: {e}")
            return
        if out.unique == 0:
            self.result.recorded_notifications[out.notify_name] += 1
            if out.retrieve is not None:
                r = _Retrieve(out.retrieve[0])
                self._retrieves.append(r)
                self._by_notify_unique[r.notify_unique] = r
            return
        step = self._pending.pop(out.unique, None)
        if step is None:
            return  # an INTERRUPT's answer, or a reply to nothing
        step.reply = rec.data
        step.rec_err = out.error
        step.reply_len = rec.orig_len
        step.reply_index = rec.index
        step.reply_seq = self._replies_read
        self._replies_read += 1
        if step.live is not None:
            self._settle(step, [])
            self._resolve(step)

    def _at_end(self) -> None:
        if self._zero_filled:
            self.result.note(
                f"{self._zero_filled} requests were cut by the capture's snap length; "
                "they are replayed with their missing bytes zero-filled"
            )
        for step in self._pending.values():
            if isinstance(step.live, bytes):
                self.result.note(
                    f"frame {step.number} {step.info.name} unique {step.info.unique}: "
                    "answered live, unanswered in the recording"
                )
        self._pending.clear()

    def _next_step(self) -> _Step | None:
        while not self._window:
            if not self._read_one():
                return None
        return self._window[0]

    # ----------------------------------------------------------------- public entry point

    def handle(self, event: Event) -> list[Command]:
        """Feed one event; returns the commands to carry out, in order."""
        return self.handle_all((event,))

    def handle_all(self, events: Iterable[Event]) -> list[Command]:
        """Feed events that arrived together (replies already waiting in the socket), in
        order; returns the commands to carry out, in order. What may be sent is looked at
        once, after the last of them: the same requests go out as when the events are fed
        one at a time, with fewer passes over the window."""
        out: list[Command] = []
        if self._finished:
            return out
        now: int | None = None
        for event in events:
            now = event.t_ns
            if isinstance(event, FrameReceived):
                self._on_frame(event, out)
            elif isinstance(event, Start):
                self._t0_live = now
                self.result.started_ns = now
            elif isinstance(event, DaemonGone):
                self._end_early(Outcome.DAEMON_GONE, event.reason, now, out)
                return out
            elif isinstance(event, Tick):
                self._check_timeouts(now, out)
            if self._finished:
                return out
        if now is not None:
            self._pump(now, out)
        return out

    # ----------------------------------------------------------------- sending

    def _ready(self, step: _Step) -> bool:
        if self._live_session is None and self._sent_any:
            return False  # nothing but INIT before the INIT reply, as in the kernel
        if step.info.kind is StepKind.INTERRUPT:
            # even when serial: it goes out while its target is outstanding (or is skipped)
            return self._prefix >= step.need
        if self.options.serial:
            return not self._outstanding
        return self._prefix >= step.need

    def _pump(self, now: int, out: list[Command]) -> None:
        while (step := self._next_step()) is not None:
            if not self._ready(step):
                break
            if self.options.speed > 0:
                due = self._t0_live + int((step.t_ns - self._t0_rec) / self.options.speed)
                if now < due:
                    out.append(WakeAt(due))
                    break
            self._window.popleft()
            self._send(step, now, out)
        if step is None and not self._outstanding:
            self._finish(Outcome.COMPLETED, "", now, out)
            return
        if (
            step is not None
            and self.options.window > 0
            and self.options.speed == 0
            and not self.options.serial
            and self._live_session is not None
        ):
            self._overtake(now, out)
        if self._outstanding:
            # requests are sent in time order with the same timeout: the first one
            # outstanding has the earliest deadline
            first = next(iter(self._outstanding.values())).deadline
            if first is not None:
                out.append(WakeAt(first))

    def _refs(self, step: _Step) -> list[IdRef]:
        if step.refs is None:
            step.refs = self.codec.request_ids(step.data, self._rec_session)
        return step.refs

    def _own(self, step: _Step) -> frozenset[int]:
        own = step.own
        if own is None:
            own = step.own = frozenset(r.value for r in self._refs(step) if r.kind is IdKind.NODEID)
        return own

    def _passed(self, step: _Step) -> tuple[frozenset[int], frozenset[tuple[int, int]]]:
        """The node ids and handles ``step`` ends or changes: a later request that names
        one of them may not pass it. A handle is its node and its fh (protocol.md §7.2):
        daemons that hand out a pointer as fh give a released file's value to the next
        file opened, and a READ of that file may pass the RELEASE of the other."""
        passed = step.passed
        if passed is None:
            nodes: set[int] = set()
            fhs: set[tuple[int, int]] = set()
            if step.info.lookup in ("forget", "batch_forget"):
                nodes.update(n for n, _ in self.codec.forget_counts(step.data, self._rec_session))
            else:
                for ref in self._refs(step):
                    if ref.kind is IdKind.NODEID:
                        nodes.add(ref.value)
                    elif ref.kind is IdKind.FH:
                        fhs.add((ref.node, ref.value))
            passed = step.passed = (frozenset(nodes), frozenset(fhs))
        return passed

    def _overtake(self, now: int, out: list[Command]) -> None:
        """Send read-only requests of the next ``window`` frames before their turn, when
        every id they name is known live and no frame they pass ends or changes it. The
        daemon sees them in another order than recorded, but they change nothing another
        request sees; what changes something (a WRITE, a RENAME) is never passed. OPENs and
        a file's RELEASE go early too when no earlier request names their node."""
        limit = self.options.window
        outstanding = self._outstanding
        if len(outstanding) >= limit:
            return
        while len(self._window) < limit and self._source is not None:
            if not self._read_one():
                break
        nodes: set[int] = set()  # ids a later request may not name: a frame it passes
        fhs: set[tuple[int, int]] = set()  # ends or changes them
        named: set[int] = set()  # nodes named by earlier frames still unsent
        busy: set[int] | None = None  # nodes named by requests outstanding live
        for o in outstanding.values():
            c = o.cls
            if c == _C_READ_ONLY:
                continue
            if c != _C_PASSABLE and c != _C_OPEN:
                return  # a request that changes what others see is in flight
            n, f = o.passed or self._passed(o)
            nodes |= n
            fhs |= f
        sent: list[_Step] = []
        room = limit - len(outstanding)
        known = self._known
        for i, step in enumerate(self._window):
            if i >= limit or len(sent) >= room:
                break
            c = step.cls
            if c == _C_PASSABLE:
                if step.info.handle == "releases":
                    # a file's RELEASE goes early too, once nothing before it names its
                    # node (all its READs answered): it frees a handle no one uses again,
                    # so the recording's next files are not kept waiting behind it
                    if busy is None:
                        busy = self._busy()
                    own = step.own
                    if own is None:
                        own = self._own(step)
                    if (
                        own.isdisjoint(named)
                        and own.isdisjoint(busy)
                        and step.info.unique not in outstanding
                        and known(step, nodes, fhs)
                    ):
                        sent.append(step)
                        named |= own
                        continue
                n, f = step.passed or self._passed(step)
                nodes |= n
                fhs |= f
                named |= nodes
                continue
            if c == _C_NOT_REQUEST:
                break
            own = step.own
            if own is None:
                own = self._own(step)
            if c == _C_OPEN:
                # an OPEN may truncate its file: it goes early only when no earlier request
                # names its node, and later requests on its node wait for it
                if busy is None:
                    busy = self._busy()
                if (
                    own.isdisjoint(named)
                    and own.isdisjoint(busy)
                    and step.info.unique not in outstanding
                    and known(step, nodes, fhs)
                ):
                    sent.append(step)
                else:
                    nodes |= own
                named |= own
                continue
            if c != _C_READ_ONLY:
                break  # it changes what later requests see: nothing passes it
            if step.info.unique not in outstanding and known(step, nodes, fhs):
                sent.append(step)
            named |= own
        for step in sent:
            self._window.remove(step)
            self._send(step, now, out)

    def _busy(self) -> set[int]:
        """The node ids named by requests outstanding live."""
        busy: set[int] = set()
        for o in self._outstanding.values():
            if o.refs is not None:
                busy |= self._own(o)
        return busy

    def _known(self, step: _Step, nodes: set[int], fhs: set[tuple[int, int]]) -> bool:
        """Every id ``step`` names is known live now and not ended by a frame it passes."""
        get = self._nodes.get
        for ref in step.refs if step.refs is not None else self._refs(step):
            kind = ref.kind
            if kind is IdKind.NODEID:
                value = ref.value
                if value == 0:
                    continue
                node = get(value)
                if node is None or node.live is None or value in nodes:
                    return False
            elif kind is IdKind.FH:
                found = self._handle_of(ref)
                if found is None or found[1].refs <= 0 or (ref.node, ref.value) in fhs:
                    return False
            else:
                return False
        return True

    def _send(self, step: _Step, now: int, out: list[Command]) -> None:
        kind = step.info.kind
        self._sent_any = True
        if kind is StepKind.INTERRUPT:
            target = step.info.target
            if target is None or target not in self._outstanding:
                self._skip(step, "its target was already answered live", out)
                return
        if kind in (StepKind.REQUEST, StepKind.INIT) and step.info.unique in self._outstanding:
            self._skip(step, "its unique is still outstanding live", out)
            return
        try:
            data = self._rewrite(step)
        except _Blocked as b:
            self._not_sent(step, b.root, b.why)
            return
        if data is None:  # a FORGET with nothing left to forget live
            return
        stats = self.result.by_opcode[step.info.name]
        if kind in (StepKind.REQUEST, StepKind.INIT):
            step.sent_ns = now
            step.deadline = now + self.options.timeout_ns
            step.sent_data = data
            self._outstanding[step.info.unique] = step
        self._last_sent = step
        stats.sent += 1
        self.result.sent += 1
        out.append(SendFrame(data, step.index))

    def _skip(self, step: _Step, why: str, out: list[Command]) -> None:
        self.result.skipped += 1
        msg = f"frame {step.number} {step.info.name} unique {step.info.unique} not sent: {why}"
        self.result.note(msg)
        out.append(Note(msg))
        if step.info.kind in (StepKind.REQUEST, StepKind.INIT):
            step.live = _Live.NONE
            self._after_live(step)

    def _not_sent(self, step: _Step, root: Difference | None, why: str) -> None:
        """``step`` names an identifier the live daemon does not know: the kernel would not
        send it. It counts under its root, and what it would have handed out is unknown."""
        self.result.not_sent += 1
        self.result.by_opcode[step.info.name].not_sent += 1
        if root is not None:
            root.dependents[step.info.name] += 1
        else:
            self.result.note(
                f"frame {step.number} {step.info.name} unique {step.info.unique} not sent: {why}"
            )
        if step.info.kind in (StepKind.REQUEST, StepKind.INIT):
            step.live = _Live.NOT_SENT
            step.root = root
            self._after_live(step)

    # ----------------------------------------------------------------- ids, request side

    def _node(self, value: int, what: str) -> int:
        node = self._nodes.get(value)
        if node is None:
            raise _Blocked(None, f"{what} {value} was never handed out (or was forgotten)")
        if node.live is None:
            raise _Blocked(node.root, f"{what} {value} was not given live")
        return node.live

    def _handle_of(self, ref: IdRef) -> tuple[HandleKey, _Handle] | None:
        kinds = (ref.dir,) if ref.dir is not None else (False, True)
        for d in kinds:
            key = (ref.node, ref.value, d)
            h = self._handles.get(key)
            if h is not None:
                return key, h
        return None

    def _rewrite(self, step: _Step) -> bytes | None:
        """The request with live ids; raises _Blocked if it names an id not given live."""
        if step is self._first:
            return step.data
        info = step.info
        if info.lookup in ("forget", "batch_forget"):
            return self._forgets(step)
        refs = self._refs(step)
        changes: list[tuple[IdRef, int]] = []
        dir_key: HandleKey | None = None
        for ref in refs:
            if ref.kind is IdKind.NODEID:
                live = 0 if ref.value == 0 else self._node(ref.value, "node id")
            elif ref.kind is IdKind.FH:
                found = self._handle_of(ref)
                if found is None:
                    # a handle the recording never opened (the kernel opened it without
                    # messages after ENOSYS, fh 0): sent as recorded
                    continue
                key, h = found
                if h.refs <= 0:
                    if info.handle in ("releases", "releases_dir") and h.failed > 0:
                        h.failed -= 1
                        if not h.failed:
                            del self._handles[key]
                    raise _Blocked(h.root, f"handle {ref.value} was not opened live")
                assert h.live is not None
                live = h.live
                if key[2]:
                    dir_key = key
            else:
                live = self._cookie(step, dir_key, ref.value)
            if live != ref.value:
                changes.append((ref, live))
        if info.handle in ("releases", "releases_dir"):
            self._release(refs)
        if info.listing and dir_key is not None:
            self._listing_request(step, dir_key, refs)
        if not changes:
            return step.data
        return self.codec.patch(step.data, changes, self._rec_session)

    def _cookie(self, step: _Step, key: HandleKey | None, cookie: int) -> int:
        if cookie == 0 or key is None:
            return cookie
        listing = self._listings.get(key)
        if listing is None:
            return cookie
        if cookie == listing.last_rec and listing.last_live is not None:
            return listing.last_live
        name = listing.rec_cookies.get(cookie)
        if name is None:
            return cookie  # a cookie the recorded listing did not hand out (seekdir)
        live = listing.live_cookies.get(name)
        if live is None:
            if listing.root is None:
                listing.root = self._root_for_listing(listing, name)
            raise _Blocked(listing.root, "its directory offset names an entry not listed live")
        return live

    def _root_for_listing(self, listing: _Listing, name: bytes) -> Difference:
        shown = name.decode("utf-8", "backslashreplace")
        d = Difference(
            listing.step_number,
            listing.opcode,
            listing.unique,
            "entries",
            f'"{shown}" listed',
            "not listed (yet) where the next READDIR would continue",
            listing.label,
        )
        self._add_difference(d)
        listing.broken = True
        return d

    def _release(self, refs: list[IdRef]) -> None:
        for ref in refs:
            if ref.kind is not IdKind.FH:
                continue
            found = self._handle_of(ref)
            if found is None:
                continue
            key, h = found
            h.refs -= 1
            if h.refs <= 0 and not h.failed:
                del self._handles[key]
            if key[2]:
                self._close_listing(key)

    def _forgets(self, step: _Step) -> bytes | None:
        entries: list[tuple[int, int]] = []
        for nodeid, nlookup in self.codec.forget_counts(step.data, self._rec_session):
            node = self._nodes.get(nodeid)
            if node is None or nodeid == 1:
                continue
            node.rec_count -= nlookup
            keep = min(node.live_count, max(node.rec_count, 0))
            give = node.live_count - keep
            if give > 0 and node.live is not None:
                entries.append((node.live, give))
                node.live_count = keep
            elif node.live is None and node.root is not None:
                node.root.dependents[step.info.name] += 1
            if node.rec_count <= 0:
                del self._nodes[nodeid]
                if node.live is not None and self._live_owner.get(node.live) == nodeid:
                    del self._live_owner[node.live]
        if not entries:
            self.result.by_opcode[step.info.name].not_sent += 1
            self.result.not_sent += 1
            return None
        if entries == self.codec.forget_counts(step.data, self._rec_session):
            return step.data
        return self.codec.forget_frame(step.data, entries, self._rec_session)

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
            if info.unique & INT_BIT:
                return  # an answer to an INTERRUPT: optional (protocol.md §5.4)
            self._difference(None, "unique", "(no such request)", str(info.unique), out)
            return
        stats = self.result.by_opcode[step.info.name]
        stats.answered += 1
        if step.sent_ns is not None:
            stats.latencies.append(event.t_ns - step.sent_ns)
        if step is self._first:
            self._live_session = self.codec.session(step.data, event.data)
        step.live = event.data
        self._after_live(step, out)

    def _after_live(self, step: _Step, out: list[Command] | None = None) -> None:
        """The live outcome of ``step`` is known: settle it if the recorded reply is read."""
        if step.reply_seq is not None:
            self._settle(step, out if out is not None else [])
            self._resolve(step)
        elif step.reply_index is None and self._source is None and isinstance(step.live, bytes):
            # the capture ended and never answered it
            self.result.note(
                f"frame {step.number} {step.info.name} unique {step.info.unique}: "
                "answered live, unanswered in the recording"
            )

    def _resolve(self, step: _Step) -> None:
        assert step.reply_seq is not None
        self._resolved.add(step.reply_seq)
        while self._prefix in self._resolved:
            self._resolved.discard(self._prefix)
            self._prefix += 1

    def _answer_retrieve(self, retrieve: tuple[int, int, int, int], out: list[Command]) -> None:
        notify_unique, nodeid, offset, _size = retrieve
        self._live_retrieves += 1
        recorded = self._retrieves.popleft().reply if self._retrieves else None
        if recorded is not None:
            data = self.codec.notify_reply_like(recorded.data, notify_unique, nodeid)
            out.append(SendFrame(data, recorded.index))
        else:
            out.append(SendFrame(self.codec.notify_reply(notify_unique, nodeid, offset, b""), None))

    # ----------------------------------------------------------------- settling a request

    def _settle(self, step: _Step, out: list[Command]) -> None:
        """Both the recorded reply and the live outcome of ``step`` are known: compare them
        and learn (or lose) the identifiers the recorded reply handed out."""
        if step.settled:
            return
        step.settled = True
        assert step.reply is not None
        rec_err = step.rec_err
        info = step.info
        if step.live == step.reply and step.reply_len <= len(step.reply) and not info.listing:
            # byte for byte the recorded answer (the common case): nothing to compare, and
            # the identifiers it hands out, if any, are the recorded ones
            self.result.compared += 1
            if rec_err == 0 and (
                info.lookup in ("entry", "readdirplus") or info.handle in ("opens", "opens_dir")
            ):
                ids = self.codec.handed_ids(step.reply, step.data, self._rec_session)
                if ids is None:
                    body = self.codec.decode_reply(step.reply, step.data, self._rec_session)
                    if body.ids or body.dirents is not None:
                        self._learn(step, body, body)
                elif ids:
                    self._learn_same(step, ids)
            return
        rec: ReplyBody | None = None
        #: the live reply differs from the recorded one in the ids it hands out only
        apart: tuple[list[tuple[IdKind, str, int]], list[tuple[IdKind, str, int]]] | None = None
        if rec_err == 0 and (
            step.live != step.reply
            or info.listing
            or info.lookup in ("entry", "readdirplus")
            or info.handle in ("opens", "opens_dir")
        ):
            if not info.listing and step.reply_len <= len(step.reply):
                if step.live == step.reply:
                    # byte for byte the recorded answer: only the ids it hands out matter
                    ids = self.codec.handed_ids(step.reply, step.data, self._rec_session)
                    if ids is not None:
                        rec = ReplyBody(ids=ids)
                elif isinstance(step.live, bytes) and self._live_session is not None:
                    apart = self.codec.ids_apart(
                        step.reply,
                        step.live,
                        step.data,
                        self._rec_session,
                        self._live_session,
                    )
                    if apart is not None:
                        rec = ReplyBody(ids=apart[0])
            if rec is None:
                rec = self.codec.decode_reply(step.reply, step.data, self._rec_session)
        elif rec_err == 0:
            rec = _NO_IDS
        if not isinstance(step.live, bytes):
            if rec is not None and step.live is _Live.NOT_SENT:
                self._lose(step, rec, step.root)
            return
        self.result.compared += 1
        if step.live == step.reply and step.reply_len <= len(step.reply):
            # byte for byte the recorded answer (the common case): nothing to compare, and
            # the identifiers it hands out, if any, are the recorded ones
            if rec is not None and (rec.ids or rec.dirents is not None):
                self._learn(step, rec, rec)
            return
        live_err = self.codec.reply_info(step.live).error
        if rec is None or live_err != 0:
            diffs = compare_errors(rec_err, live_err)
            root = None
            for d in diffs:
                # the same request failing the same way again (a second LOOKUP of a removed
                # name) is the same root cause: it is told under the first one
                key = (info.opcode, info.nodeid, self.codec.label(step.data, self._rec_session),
                       rec_err, live_err)  # fmt: skip
                root = self._repeated.get(key)
                if root is not None:
                    root.again.append(step.number)
                else:
                    root = self._difference(
                        step, d.field, self._recorded_side(rec, rec_err), d.live, out
                    )
                    self._repeated[key] = root
            if rec is not None:
                self._lose(step, rec, root)
            return
        if apart is not None:
            # nothing but the ids differ: no field to compare, the ids go through the mapping
            live = ReplyBody(ids=apart[1])
        else:
            live = self.codec.decode_reply(
                step.live, step.sent_data or step.data, self._live_session
            )
        negative = self._negative_entry(rec, live)
        if negative is not None:
            # a negative entry on one side only: the attributes beside it mean nothing
            neg = self._difference(step, negative.field, negative.recorded, negative.live, out)
            if negative.live.startswith("0 "):
                self._lose(step, rec, neg)  # the node the recording found is not there live
            return
        if apart is not None:
            for d in self._learn(step, rec, live):
                self._difference(step, d.field, d.recorded, d.live, out)
            return
        cut = step.reply_len if step.reply_len > len(step.reply) else None
        recorded_len = None if cut is None else cut - 16
        mapped = {p for _, p, _ in rec.ids} | {p for _, p, _ in live.ids}
        diffs = compare_bodies(
            self.options.policy, rec, live, mapped=mapped, recorded_len=recorded_len
        )
        diffs += self._learn(step, rec, live)
        for d in diffs:
            self._difference(step, d.field, d.recorded, d.live, out)

    @staticmethod
    def _negative_entry(rec: ReplyBody, live: ReplyBody) -> FieldDiff | None:
        """The entry is negative (node id 0) on one side only."""
        r = next((v for k, p, v in rec.ids if k is IdKind.NODEID), None)
        lv = next((v for k, p, v in live.ids if k is IdKind.NODEID), None)
        if r is None or lv is None or (r == 0) == (lv == 0):
            return None
        path = next(p for k, p, v in rec.ids if k is IdKind.NODEID)

        def side(v: int) -> str:
            return "0 (negative entry)" if v == 0 else str(v)

        return FieldDiff(path, side(r), side(lv))

    def _recorded_side(self, rec: ReplyBody | None, rec_err: int) -> str:
        if rec is None:
            return error_name(rec_err)
        handed = [f"{'entry nodeid' if k is IdKind.NODEID else k.value} {v}" for k, _, v in rec.ids]
        if rec.dirents is not None:
            handed.append(f"{len(rec.dirents)} entries")
        return ", ".join(handed) if handed else "0 (success)"

    def _lose(self, step: _Step, rec: ReplyBody, root: Difference | None) -> None:
        """The recorded reply handed out ``rec.ids``; the live daemon did not."""
        entry_node: int | None = None
        for kind, _path, value in rec.ids:
            if kind is IdKind.NODEID:
                entry_node = value
                if value == 0:
                    continue
                node = self._nodes.get(value)
                if node is None:
                    self._nodes[value] = _Node(None, rec_count=1, root=root)
                else:
                    node.rec_count += 1
                    if node.live is None:
                        node.root = root
            elif kind is IdKind.FH:
                owner = entry_node if entry_node is not None else step.info.nodeid
                key = (owner, value, step.info.handle == "opens_dir")
                h = self._handles.get(key)
                if h is None:
                    h = self._handles[key] = _Handle(None)
                h.failed += 1
                h.root = root
        if rec.dirents is not None:
            listing = self._listing_for(step)
            if listing is not None:
                listing.broken = True
                listing.root = listing.root or root
                for d in rec.dirents:
                    listing.rec_cookies[d.cookie] = d.name
            for d in rec.dirents:
                if d.nodeid and d.name not in (b".", b".."):
                    self._lose_node(d.nodeid, root)

    def _lose_node(self, value: int, root: Difference | None) -> None:
        node = self._nodes.get(value)
        if node is None:
            self._nodes[value] = _Node(None, rec_count=1, root=root)
        else:
            node.rec_count += 1

    def _learn(self, step: _Step, rec: ReplyBody, live: ReplyBody) -> list[FieldDiff]:
        diffs: list[FieldDiff] = []
        live_ids = {(kind, path): value for kind, path, value in live.ids}
        rec_entry: int | None = None
        live_entry: int | None = None
        for kind, path, value in rec.ids:
            lv = live_ids.get((kind, path))
            if kind is IdKind.NODEID:
                rec_entry, live_entry = value, lv
                diffs += self._learn_nodeid(path, value, lv)
            elif kind is IdKind.FH and lv is not None:
                self._learn_handle(step, rec_entry, value, lv)
        del live_entry
        if rec.dirents is not None and live.dirents is not None:
            diffs += self._learn_dirents(step, rec.dirents, live.dirents)
        return diffs

    def _learn_same(self, step: _Step, ids: list[tuple[IdKind, str, int]]) -> None:
        """:meth:`_learn` of a reply equal to the recorded one: each id is its own live
        value."""
        rec_entry: int | None = None
        for kind, path, value in ids:
            if kind is IdKind.NODEID:
                rec_entry = value
                self._learn_nodeid(path, value, value)
            elif kind is IdKind.FH:
                self._learn_handle(step, rec_entry, value, value)

    def _learn_handle(self, step: _Step, entry: int | None, rec: int, live: int) -> None:
        """A handle the live daemon gave (``live``) for the recorded ``rec``: keyed by its node
        (the reply's entry, else the request's node), its recorded value and its kind."""
        owner = entry if entry is not None else step.info.nodeid
        key = (owner, rec, step.info.handle == "opens_dir")
        h = self._handles.get(key)
        if h is None:
            h = self._handles[key] = _Handle(live)
        h.live = live
        h.refs += 1
        if key[2]:
            self._close_listing(key)

    def _learn_nodeid(self, path: str, rec: int, live: int | None) -> list[FieldDiff]:
        if rec == 0 or not live:
            if rec != 0:
                self._lose_node(rec, None)
            if (rec == 0) != (not live):
                return [FieldDiff(path, str(rec), str(live or 0))]
            return []
        diffs: list[FieldDiff] = []
        node = self._nodes.get(rec)
        if node is None:
            node = self._nodes[rec] = _Node(live)
        elif node.live is not None and node.live != live and node.live_count > 0:
            diffs.append(
                FieldDiff(path, f"{rec} (live {node.live} so far)", f"{live}: another node id")
            )
        owner = self._live_owner.get(live)
        if owner is not None and owner != rec and owner in self._nodes:
            other = self._nodes[owner]
            if other.live == live and other.live_count > 0:
                diffs.append(
                    FieldDiff(path, f"{rec}", f"{live}, already the live id of recorded {owner}")
                )
        node.live = live
        node.root = None
        node.rec_count += 1
        node.live_count += 1
        self._live_owner[live] = rec
        return diffs

    # ----------------------------------------------------------------- directory listings

    def _listing_for(self, step: _Step) -> _Listing | None:
        refs = self.codec.request_ids(step.data, self._rec_session)
        for ref in refs:
            if ref.kind is IdKind.FH:
                found = self._handle_of(ref)
                if found is not None:
                    return self._listings.get(found[0])
        return None

    def _listing_request(self, step: _Step, key: HandleKey, refs: list[IdRef]) -> None:
        offset = next((r.value for r in refs if r.kind is IdKind.COOKIE), 0)
        listing = self._listings.get(key)
        if offset == 0 or listing is None:
            if listing is not None:
                self._close_listing(key)
            label = self.codec.label(step.data, self._rec_session)
            self._listings[key] = _Listing(
                step.number, step.info.name, step.info.unique, label or f"node {key[0]}"
            )

    def _learn_dirents(self, step: _Step, rec: list[Dirent], live: list[Dirent]) -> list[FieldDiff]:
        diffs: list[FieldDiff] = []
        listing = self._listing_for(step)
        if listing is not None:
            listing.rec.extend(rec)
            listing.live.extend(live)
            for d in rec:
                listing.rec_cookies[d.cookie] = d.name
            for d in live:
                listing.live_cookies[d.name] = d.cookie
            if rec:
                listing.last_rec = rec[-1].cookie
                listing.last_live = live[-1].cookie if live else listing.last_live
        by_name = {d.name: d for d in live}
        for d in rec:
            if d.nodeid is None or d.name in (b".", b".."):
                continue
            ld = by_name.get(d.name)
            name = d.name.decode("utf-8", "backslashreplace")
            if ld is None or ld.nodeid is None:
                if d.nodeid:
                    self._lose_node(d.nodeid, listing.root if listing else None)
                continue
            if d.nodeid == 0 and ld.nodeid == 0:
                continue
            diffs += self._learn_nodeid(f"entries[{name}].nodeid", d.nodeid, ld.nodeid)
        if listing is None:  # no known handle: compare this chunk on its own
            diffs += compare_listing(rec, live, strict=self.options.policy.strict)
        return diffs

    def _close_listing(self, key: HandleKey, out: list[Command] | None = None) -> None:
        listing = self._listings.pop(key, None)
        if listing is None or listing.broken:
            return
        diffs = compare_listing(listing.rec, listing.live, strict=self.options.policy.strict)
        for d in diffs:
            self._add_difference(
                Difference(
                    listing.step_number,
                    listing.opcode,
                    listing.unique,
                    d.field,
                    d.recorded,
                    d.live,
                    listing.label,
                )
            )

    # ----------------------------------------------------------------- differences

    def _add_difference(self, d: Difference) -> None:
        self.result.differences.append(d)
        self.result.by_opcode[d.opcode].differences += 1

    def _difference(
        self, step: _Step | None, fieldname: str, recorded: str, live: str, out: list[Command]
    ) -> Difference:
        if step is None:
            d = Difference(0, "?", 0, fieldname, recorded, live)
            self.result.differences.append(d)
        else:
            label = self.codec.label(step.data, self._rec_session)
            d = Difference(
                step.number, step.info.name, step.info.unique, fieldname, recorded, live, label
            )
            self._add_difference(d)
        out.append(ReportDifference(d))
        return d

    # ----------------------------------------------------------------- ending

    def _check_timeouts(self, now: int, out: list[Command]) -> None:
        for unique, step in list(self._outstanding.items()):
            if step.deadline is None or now < step.deadline:
                continue
            # does the recording answer it? read ahead (a bounded window) to know
            budget = READ_AHEAD
            while step.reply_index is None and self._source is not None and budget > 0:
                self._read_one()
                budget -= 1
            if step.reply_index is not None or budget <= 0:
                self._end_early(
                    Outcome.DAEMON_HUNG,
                    f"no reply to frame {step.number} {step.info.name} (unique "
                    f"{step.info.unique}) within {self.options.timeout_ns / 1e9:g} s",
                    now,
                    out,
                    step,
                )
                return
            del self._outstanding[unique]
            self.result.unanswered += 1
            step.live = _Live.NONE

    def _end_early(
        self,
        outcome: Outcome,
        reason: str,
        now: int,
        out: list[Command],
        culprit: _Step | None = None,
    ) -> None:
        if outcome is Outcome.DAEMON_GONE:
            # read what is left of the script: if nothing the recording answered remains,
            # the daemon ending now is its normal end
            while self._source is not None and self._read_one():
                if self._window and self._window[-1].info.kind is not StepKind.NO_REPLY:
                    break
        rest = any(s.info.kind is not StepKind.NO_REPLY for s in self._window)
        if not rest and not any(s.reply is not None for s in self._outstanding.values()):
            self.result.unanswered += len(self._outstanding)
            self._finish(Outcome.COMPLETED, "", now, out)
            return
        live = sorted(self._outstanding.values(), key=lambda s: s.index)
        if culprit is None:
            culprit = next((s for s in live if s.reply is not None), None)
        if culprit is None:
            culprit = self._last_sent
        r = self.result
        r.outstanding = [(s.number, s.info.name, s.info.unique) for s in live]
        if culprit is not None:
            r.died_on = (culprit.number, culprit.info.name, culprit.info.unique)
        self._finish(outcome, reason, now, out)

    def _finish(self, outcome: Outcome, reason: str, now: int, out: list[Command]) -> None:
        for key in list(self._listings):
            self._close_listing(key)
        self._finished = True
        self.result.outcome = outcome
        self.result.reason = reason
        self.result.ended_ns = now
        self.result.differences.sort(key=lambda d: d.frame)
        out.append(Finish(self.result))

    @property
    def finished(self) -> bool:
        return self._finished
