"""Playbook tests of the replay engine: events in, commands out, no sockets, no clock.

Recordings are built frame by frame with the protocol encoders; the engine runs with the real
:class:`ProtocolCodec`, so these tests also pin what the registry-driven rewriting does.
"""

from __future__ import annotations

from typing import Any

import pytest

from fusetrace.errors import CaptureError
from fusetrace.frame import Direction, Frame
from fusetrace.protocol.abi import NotifyCode, Opcode
from fusetrace.protocol.decode import decode_request
from fusetrace.protocol.encode import encode_notify, encode_reply, encode_request
from fusetrace.replay.codec import ProtocolCodec
from fusetrace.replay.engine import (
    Command,
    DaemonGone,
    Finish,
    FrameReceived,
    Note,
    Outcome,
    ReplayEngine,
    ReplayOptions,
    ReportDifference,
    SendFrame,
    Start,
    Tick,
    WakeAt,
)
from fusetrace.replay.matching import MatchPolicy

Op = Opcode
K, D = Direction.INBOUND, Direction.OUTBOUND
SEC = 1_000_000_000


def req(op: int, unique: int, nodeid: int = 0, **body: Any) -> bytes:
    return encode_request(op, body, unique=unique, nodeid=nodeid, uid=1000, gid=1000, pid=7)


def rep(op: int, unique: int, error: int = 0, **body: Any) -> bytes:
    return encode_reply(op, body, unique=unique, error=error)


def intr(unique: int, target: int) -> bytes:
    return encode_request(Op.INTERRUPT, {"unique": target}, unique=unique)


INIT_REQ = req(Op.INIT, 2, major=7, minor=45, max_readahead=65536, flags=1)
INIT_REP = rep(Op.INIT, 2, major=7, minor=45, max_write=65536, flags=1)


def entry(nodeid: int, size: int = 10, atime: int = 5, mode: int = 0o100644) -> dict[str, Any]:
    return {
        "nodeid": nodeid,
        "generation": 1,
        "attr": {"ino": nodeid, "size": size, "mode": mode, "atime": atime, "nlink": 1},
    }


def recording(*frames: tuple[Direction, bytes]) -> list[Frame]:
    """(direction, frame) pairs, INIT pair first, timestamps 1 ms apart."""
    all_frames = [(K, INIT_REQ), (D, INIT_REP), *frames]
    return [Frame(i, i * 1_000_000, d, data, len(data)) for i, (d, data) in enumerate(all_frames)]


def sent(cmds: list[Command]) -> list[tuple[str, int, int, dict[str, Any]]]:
    """The frames sent, as (opcode name, unique, nodeid, body)."""
    out = []
    for c in cmds:
        if isinstance(c, SendFrame):
            d = decode_request(c.data)
            out.append((d.name, d.unique, d.nodeid or 0, d.body))
    return out


def diffs(cmds: list[Command]) -> list[tuple[str, str, str, str]]:
    return [
        (c.difference.opcode, c.difference.field, c.difference.recorded, c.difference.live)
        for c in cmds
        if isinstance(c, ReportDifference)
    ]


def finish(cmds: list[Command]) -> Finish | None:
    return next((c for c in cmds if isinstance(c, Finish)), None)


def started(records: list[Frame], **opts: Any) -> ReplayEngine:
    """An engine past Start and the INIT exchange; in the recorded order exactly unless a
    ``window`` is given."""
    opts.setdefault("window", 0)
    eng = ReplayEngine(records, ProtocolCodec(), ReplayOptions(**opts))
    assert [s[0] for s in sent(eng.handle(Start(0)))] == ["INIT"]
    return eng


# ---------------------------------------------------------------------------- ordering


def test_init_goes_alone_and_first_with_the_recorded_bytes() -> None:
    recs = recording((K, req(Op.GETATTR, 4, 1)), (D, rep(Op.GETATTR, 4, attr=entry(1)["attr"])))
    eng = ReplayEngine(recs, ProtocolCodec())
    cmds = eng.handle(Start(0))
    assert [c for c in cmds if isinstance(c, SendFrame)] == [SendFrame(INIT_REQ, 0)]
    assert sent(eng.handle(Tick(5))) == []  # nothing before the INIT reply
    cmds = eng.handle(FrameReceived(INIT_REP, 10))
    assert [s[:3] for s in sent(cmds)] == [("GETATTR", 4, 1)]


def test_requests_outstanding_together_are_sent_together() -> None:
    # recording: three READs outstanding at once, then a fourth after the first answer
    reads = [req(Op.READ, u, 1, fh=0, offset=u, size=4) for u in (4, 6, 8)]
    recs = recording(
        (K, reads[0]), (K, reads[1]), (K, reads[2]),
        (D, rep(Op.READ, 4, data=b"aaaa")),
        (K, req(Op.GETATTR, 10, 1)),
        (D, rep(Op.READ, 6, data=b"bbbb")), (D, rep(Op.READ, 8, data=b"cccc")),
        (D, rep(Op.GETATTR, 10, attr=entry(1)["attr"])),
    )  # fmt: skip
    eng = started(recs)
    cmds = eng.handle(FrameReceived(INIT_REP, 1))
    assert [s[1] for s in sent(cmds)] == [4, 6, 8]
    # the GETATTR waits for the first READ's answer, as in the recording
    assert sent(eng.handle(FrameReceived(rep(Op.READ, 6, data=b"bbbb"), 2))) == []
    assert [s[1] for s in sent(eng.handle(FrameReceived(rep(Op.READ, 4, data=b"aaaa"), 3)))] == [10]
    eng.handle(FrameReceived(rep(Op.READ, 8, data=b"cccc"), 4))
    cmds = eng.handle(FrameReceived(rep(Op.GETATTR, 10, attr=entry(1)["attr"]), 5))
    done = finish(cmds)
    assert done is not None and done.result.outcome is Outcome.COMPLETED
    assert done.result.compared == 5 and done.result.differences == []


def test_serial_sends_one_request_at_a_time() -> None:
    recs = recording(
        (K, req(Op.GETATTR, 4, 1)), (K, req(Op.STATFS, 6, 1)),
        (D, rep(Op.GETATTR, 4, attr=entry(1)["attr"])), (D, rep(Op.STATFS, 6)),
    )  # fmt: skip
    eng = started(recs, serial=True)
    assert [s[1] for s in sent(eng.handle(FrameReceived(INIT_REP, 1)))] == [4]
    cmds = eng.handle(FrameReceived(rep(Op.GETATTR, 4, attr=entry(1)["attr"]), 2))
    assert [s[1] for s in sent(cmds)] == [6]


def test_speed_keeps_recorded_pacing_scaled() -> None:
    recs = recording((K, req(Op.STATFS, 4, 1)), (D, rep(Op.STATFS, 4)))
    # STATFS was recorded 2 ms after INIT; at speed 2 it is due 1 ms after the start
    eng = started(recs, speed=2.0)
    cmds = eng.handle(FrameReceived(INIT_REP, 100))
    assert sent(cmds) == [] and WakeAt(1_000_000) in cmds
    assert [s[0] for s in sent(eng.handle(Tick(1_000_000)))] == ["STATFS"]


# ---------------------------------------------------------------------------- id mapping


def test_node_ids_and_handles_are_learned_and_rewritten() -> None:
    recs = recording(
        (K, req(Op.LOOKUP, 4, 1, name="f")), (D, rep(Op.LOOKUP, 4, **entry(5))),
        (K, req(Op.OPEN, 6, 5, flags=0)), (D, rep(Op.OPEN, 6, fh=7)),
        (K, req(Op.READ, 8, 5, fh=7, offset=0, size=3)), (D, rep(Op.READ, 8, data=b"abc")),
        (K, req(Op.LINK, 10, 1, oldnodeid=5, newname="g")), (D, rep(Op.LINK, 10, **entry(5))),
        (K, req(Op.RENAME, 12, 1, newdir=5, oldname="a", newname="b")), (D, rep(Op.RENAME, 12)),
        (K, req(Op.BATCH_FORGET, 14, forgets=[{"nodeid": 5, "nlookup": 1},
                                             {"nodeid": 9, "nlookup": 1}])),
        (K, req(Op.RELEASE, 16, 5, fh=7)), (D, rep(Op.RELEASE, 16)),
    )  # fmt: skip
    eng = started(recs)
    assert sent(eng.handle(FrameReceived(INIT_REP, 1)))[0][:3] == ("LOOKUP", 4, 1)
    cmds = eng.handle(FrameReceived(rep(Op.LOOKUP, 4, **entry(500)), 2))
    assert [(s[0], s[2]) for s in sent(cmds)] == [("OPEN", 500)]
    cmds = eng.handle(FrameReceived(rep(Op.OPEN, 6, fh=70), 3))
    (read,) = sent(cmds)
    assert read[2] == 500 and read[3]["fh"] == 70
    (link,) = sent(eng.handle(FrameReceived(rep(Op.READ, 8, data=b"abc"), 4)))
    assert link[2] == 1 and link[3]["oldnodeid"] == 500
    cmds = eng.handle(FrameReceived(rep(Op.LINK, 10, **entry(500)), 5))
    (rename,) = sent(cmds)
    assert rename[3]["newdir"] == 500
    cmds = eng.handle(FrameReceived(rep(Op.RENAME, 12), 6))
    forget, release = sent(cmds)
    # an id never handed out (9) is not forgotten live: the kernel forgets only what it got
    assert [f["nodeid"] for f in forget[3]["forgets"]] == [500]
    assert release[2] == 500 and release[3]["fh"] == 70
    done = finish(eng.handle(FrameReceived(rep(Op.RELEASE, 16), 7)))
    assert done is not None and done.result.differences == []


def test_directory_cookies_and_readdirplus_ids_are_mapped() -> None:
    def ents(base: int, names: list[str], node: int) -> list[dict[str, Any]]:
        return [
            {**entry(node + i), "off": base + i, "type": 8, "name": n} for i, n in enumerate(names)
        ]

    recs = recording(
        (K, req(Op.OPENDIR, 4, 1, flags=0)), (D, rep(Op.OPENDIR, 4, fh=3)),
        (K, req(Op.READDIRPLUS, 6, 1, fh=3, offset=0, size=4096)),
        (D, rep(Op.READDIRPLUS, 6, entries=ents(10, ["a", "b"], 20))),
        (K, req(Op.READDIRPLUS, 8, 1, fh=3, offset=11, size=4096)),
        (D, rep(Op.READDIRPLUS, 8, entries=ents(12, ["c"], 22))),
        (K, req(Op.GETATTR, 10, 21)), (D, rep(Op.GETATTR, 10, attr=entry(21)["attr"])),
    )  # fmt: skip
    eng = started(recs)
    eng.handle(FrameReceived(INIT_REP, 1))
    (rd,) = sent(eng.handle(FrameReceived(rep(Op.OPENDIR, 4, fh=300), 2)))
    assert rd[3]["fh"] == 300 and rd[3]["offset"] == 0
    live1 = rep(Op.READDIRPLUS, 6, entries=ents(1000, ["a", "b"], 2000))
    (rd2,) = sent(eng.handle(FrameReceived(live1, 3)))
    assert rd2[3]["offset"] == 1001  # the live cookie of "b"
    (ga,) = sent(eng.handle(FrameReceived(rep(Op.READDIRPLUS, 8, entries=ents(9, ["c"], 9)), 4)))
    assert ga[2] == 2001  # "b" was node 21 recorded, 2001 live


def test_inconsistent_live_node_id_is_a_difference() -> None:
    recs = recording(
        (K, req(Op.LOOKUP, 4, 1, name="a")), (D, rep(Op.LOOKUP, 4, **entry(5))),
        (K, req(Op.LOOKUP, 6, 1, name="b")), (D, rep(Op.LOOKUP, 6, **entry(6))),
    )  # fmt: skip
    eng = started(recs)
    eng.handle(FrameReceived(INIT_REP, 1))
    eng.handle(FrameReceived(rep(Op.LOOKUP, 4, **entry(50)), 2))
    # the live daemon gives "b" the id it gave "a": two recorded nodes merged into one
    cmds = eng.handle(FrameReceived(rep(Op.LOOKUP, 6, **entry(50)), 3))
    assert diffs(cmds) == [("LOOKUP", "entry.nodeid", "6", "50, already the live id of recorded 5")]


# ---------------------------------------------------------------------------- comparison


def test_error_codes_always_compared_payload_only_when_both_succeed() -> None:
    recs = recording(
        (K, req(Op.LOOKUP, 4, 1, name="x")), (D, rep(Op.LOOKUP, 4, error=-2)),
        (K, req(Op.LOOKUP, 6, 1, name="y")), (D, rep(Op.LOOKUP, 6, **entry(5))),
    )  # fmt: skip
    eng = started(recs)
    eng.handle(FrameReceived(INIT_REP, 1))
    assert diffs(eng.handle(FrameReceived(rep(Op.LOOKUP, 4, error=-13), 2))) == [
        ("LOOKUP", "error", "-2 ENOENT", "-13 EACCES")
    ]
    assert diffs(eng.handle(FrameReceived(rep(Op.LOOKUP, 6, error=-2), 3))) == [
        ("LOOKUP", "error", "entry nodeid 5", "-2 ENOENT")
    ]


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        (MatchPolicy.build(), [("GETATTR", "attr.attr.size", "10", "11")]),
        (MatchPolicy.build(["attr.size"]), []),
        (
            MatchPolicy.build(strict=True),
            [
                ("GETATTR", "attr.attr.atime", "5", "6"),
                ("GETATTR", "attr.attr.size", "10", "11"),
                ("GETATTR", "attr.attr_valid", "1", "2"),
            ],
        ),
    ],
)
def test_field_policy(policy: MatchPolicy, expected: list[tuple[str, str, str, str]]) -> None:
    recs = recording(
        (K, req(Op.GETATTR, 4, 1)),
        (D, rep(Op.GETATTR, 4, attr_valid=1, attr=entry(1, size=10, atime=5)["attr"])),
    )
    eng = started(recs, policy=policy)
    eng.handle(FrameReceived(INIT_REP, 1))
    live = rep(Op.GETATTR, 4, attr_valid=2, attr=entry(1, size=11, atime=6)["attr"])
    assert diffs(eng.handle(FrameReceived(live, 2))) == expected


def test_read_data_reports_first_differing_offset() -> None:
    recs = recording(
        (K, req(Op.READ, 4, 1, fh=0, offset=0, size=8)), (D, rep(Op.READ, 4, data=b"abcdefgh"))
    )
    eng = started(recs)
    eng.handle(FrameReceived(INIT_REP, 1))
    (d,) = diffs(eng.handle(FrameReceived(rep(Op.READ, 4, data=b"abcdXfgh"), 2)))
    assert d[1] == "data" and "offset 4" in d[3]


# ---------------------------------------------------------------------------- the daemon's side


def test_interrupt_sent_only_while_target_outstanding() -> None:
    recs = recording(
        (K, req(Op.SETLKW, 4, 1, fh=0)), (K, intr(5, 4)),
        (D, rep(Op.SETLKW, 4, error=-4)),
        (K, req(Op.GETATTR, 6, 1)), (K, intr(7, 6)),
        (D, rep(Op.GETATTR, 6, attr=entry(1)["attr"])),
    )  # fmt: skip
    eng = started(recs, serial=True)
    cmds = eng.handle(FrameReceived(INIT_REP, 1))
    assert [s[0] for s in sent(cmds)] == ["SETLKW", "INTERRUPT"]
    cmds = eng.handle(FrameReceived(rep(Op.SETLKW, 4, error=-4), 2))
    assert [s[0] for s in sent(cmds)] == ["GETATTR", "INTERRUPT"]
    # had GETATTR been answered first, its INTERRUPT would not go out
    recs2 = recording(
        (K, req(Op.GETATTR, 6, 1)), (D, rep(Op.GETATTR, 6, attr=entry(1)["attr"])),
        (K, intr(7, 6)),
    )  # fmt: skip
    eng2 = started(recs2)
    eng2.handle(FrameReceived(INIT_REP, 1))
    cmds = eng2.handle(FrameReceived(rep(Op.GETATTR, 6, attr=entry(1)["attr"]), 2))
    assert sent(cmds) == [] and any(isinstance(c, Note) for c in cmds)
    assert finish(cmds) is not None


def test_retrieve_answered_with_the_recorded_data_and_live_unique() -> None:
    retrieve = encode_notify(
        NotifyCode.RETRIEVE, {"notify_unique": 3, "nodeid": 5, "offset": 0, "size": 10}
    )
    notify_reply = req(Op.NOTIFY_REPLY, 3, 5, offset=0, size=4, data=b"wxyz")
    recs = recording((K, req(Op.STATFS, 4, 1)), (D, retrieve), (K, notify_reply),
                     (D, rep(Op.STATFS, 4)))  # fmt: skip
    eng = started(recs)
    (statfs,) = sent(eng.handle(FrameReceived(INIT_REP, 1)))
    assert statfs[0] == "STATFS"  # the NOTIFY_REPLY is not sent on its own
    live = encode_notify(
        NotifyCode.RETRIEVE, {"notify_unique": 99, "nodeid": 50, "offset": 0, "size": 10}
    )
    (nr,) = sent(eng.handle(FrameReceived(live, 2)))
    assert nr[:3] == ("NOTIFY_REPLY", 99, 50) and nr[3]["data"] == b"wxyz"
    # a second live RETRIEVE the recording never had gets an empty answer
    (nr2,) = sent(eng.handle(FrameReceived(live, 3)))
    assert nr2[1] == 99 and nr2[3]["size"] == 0


def test_daemon_death_reports_the_request_it_died_on() -> None:
    recs = recording(
        (K, req(Op.GETATTR, 4, 1)), (D, rep(Op.GETATTR, 4, attr=entry(1)["attr"])),
        (K, req(Op.READ, 6, 1, fh=0, offset=0, size=4)), (D, rep(Op.READ, 6, data=b"abcd")),
        (K, req(Op.STATFS, 8, 1)), (D, rep(Op.STATFS, 8)),
    )  # fmt: skip
    eng = started(recs)
    eng.handle(FrameReceived(INIT_REP, 1))
    eng.handle(FrameReceived(rep(Op.GETATTR, 4, attr=entry(1)["attr"]), 2))
    cmds = eng.handle(DaemonGone(3, "killed by SIGKILL"))
    done = finish(cmds)
    assert done is not None
    r = done.result
    assert r.outcome is Outcome.DAEMON_GONE and r.reason == "killed by SIGKILL"
    assert r.died_on == (5, "READ", 6)  # frame numbers count from 1
    assert r.compared == 2 and r.sent == 3
    assert eng.handle(Tick(4)) == []  # over is over


def test_hang_ends_the_replay_but_unrecorded_answers_are_not_awaited() -> None:
    recs = recording(
        (K, req(Op.GETATTR, 4, 1)),  # never answered in the recording (capture ended)
        (K, req(Op.STATFS, 6, 1)), (D, rep(Op.STATFS, 6)),
    )  # fmt: skip
    eng = started(recs, timeout_ns=SEC)
    cmds = eng.handle(FrameReceived(INIT_REP, 0))
    assert [s[0] for s in sent(cmds)] == ["GETATTR", "STATFS"] and WakeAt(SEC) in cmds
    eng.handle(FrameReceived(rep(Op.STATFS, 6), 10))
    done = finish(eng.handle(Tick(SEC)))
    assert done is not None and done.result.outcome is Outcome.COMPLETED
    assert done.result.unanswered == 1

    eng = started(recs, timeout_ns=SEC)
    eng.handle(FrameReceived(INIT_REP, 0))
    done = finish(eng.handle(Tick(2 * SEC)))
    assert done is not None and done.result.outcome is Outcome.DAEMON_HUNG
    assert done.result.died_on == (4, "STATFS", 6)


def test_daemon_ending_after_everything_was_answered_is_a_clean_end() -> None:
    recs = recording((K, req(Op.GETATTR, 4, 1)))  # recorded without an answer
    eng = started(recs)
    eng.handle(FrameReceived(INIT_REP, 0))
    done = finish(eng.handle(DaemonGone(5, "exit status 0")))
    assert done is not None and done.result.outcome is Outcome.COMPLETED


def test_capture_must_start_with_init() -> None:
    data = req(Op.GETATTR, 4, 1)
    with pytest.raises(CaptureError, match="does not start with INIT"):
        ReplayEngine([Frame(0, 0, K, data, len(data))], ProtocolCodec())
    with pytest.raises(CaptureError, match="never answered"):
        ReplayEngine([Frame(0, 0, K, INIT_REQ, len(INIT_REQ))], ProtocolCodec())


def test_frames_cut_by_the_snap_length() -> None:
    write = req(Op.WRITE, 4, 1, fh=0, offset=0, size=100, data=b"w" * 100)
    read = req(Op.READ, 6, 1, fh=0, offset=0, size=100)
    read_rep = rep(Op.READ, 6, data=b"r" * 100)
    recs = recording((K, write), (D, rep(Op.WRITE, 4, size=100)), (K, read), (D, read_rep))
    # keep 64 bytes of each frame, as `fusetrace record --snaplen 64` would
    recs = [r._replace(data=r.data[:64]) for r in recs]
    eng = started(recs)
    (w,) = [c for c in eng.handle(FrameReceived(INIT_REP, 1)) if isinstance(c, SendFrame)]
    assert len(w.data) == len(write) and w.data[64:] == bytes(len(write) - 64)
    eng.handle(FrameReceived(rep(Op.WRITE, 4, size=100), 2))
    # the kept 48 data bytes match and the lengths agree: no difference
    done = finish(eng.handle(FrameReceived(read_rep, 3)))
    assert done is not None and done.result.differences == []
    assert any("snap length" in n for n in done.result.notes)


def test_reply_to_nothing_outstanding_is_a_difference() -> None:
    recs = recording((K, req(Op.STATFS, 4, 1)), (D, rep(Op.STATFS, 4)))
    eng = started(recs)
    eng.handle(FrameReceived(INIT_REP, 1))
    cmds = eng.handle(FrameReceived(rep(Op.GETATTR, 40, attr={}), 2))
    (d,) = [c.difference for c in cmds if isinstance(c, ReportDifference)]
    assert d.line() == "live frame: unique: (no such request) → 40"
    # an answer to an INTERRUPT is optional and never a difference
    assert (
        diffs(eng.handle(FrameReceived(encode_reply(Op.INTERRUPT, unique=5, error=-11), 3))) == []
    )


# ---------------------------------------------------------------------------- dependencies


def test_read_only_requests_go_ahead_of_their_turn_within_the_window() -> None:
    attr = entry(1)["attr"]
    recs = recording(
        (K, req(Op.LOOKUP, 4, 1, name="f")), (D, rep(Op.LOOKUP, 4, **entry(5))),
        (K, req(Op.OPEN, 6, 5, flags=0)), (D, rep(Op.OPEN, 6, fh=7)),
        (K, req(Op.READ, 8, 5, fh=7, offset=0, size=3)), (D, rep(Op.READ, 8, data=b"abc")),
        (K, req(Op.RELEASE, 10, 5, fh=7)), (D, rep(Op.RELEASE, 10)),
        (K, req(Op.GETATTR, 12, 1)), (D, rep(Op.GETATTR, 12, attr=attr)),
        (K, req(Op.GETATTR, 14, 5)), (D, rep(Op.GETATTR, 14, attr=attr)),
        (K, req(Op.WRITE, 16, 5, fh=7, offset=0, size=1, data=b"x")),
        (D, rep(Op.WRITE, 16, size=1)),
        (K, req(Op.GETATTR, 18, 1)), (D, rep(Op.GETATTR, 18, attr=attr)),
    )  # fmt: skip
    eng = started(recs, window=8)
    cmds = eng.handle(FrameReceived(INIT_REP, 1))
    # the GETATTRs of the root go ahead; the one of node 5 waits for the LOOKUP that names
    # it, and nothing passes the WRITE
    assert [(s[0], s[1]) for s in sent(cmds)] == [("LOOKUP", 4), ("GETATTR", 12)]
    cmds = eng.handle(FrameReceived(rep(Op.LOOKUP, 4, **entry(50)), 2))
    assert [(s[0], s[1]) for s in sent(cmds)] == [("OPEN", 6)]
    cmds = eng.handle(FrameReceived(rep(Op.OPEN, 6, fh=70), 3))
    # the READ names the handle now known; GETATTR of node 5 passes no RELEASE on node 5,
    # unsent or outstanding
    assert [(s[0], s[1]) for s in sent(cmds)] == [("READ", 8)]
    cmds = eng.handle(FrameReceived(rep(Op.READ, 8, data=b"abc"), 4))
    assert [(s[0], s[1]) for s in sent(cmds)] == [("RELEASE", 10)]
    assert sent(eng.handle(FrameReceived(rep(Op.GETATTR, 12, attr=attr), 5))) == []
    cmds = eng.handle(FrameReceived(rep(Op.RELEASE, 10), 6))
    assert [(s[0], s[1]) for s in sent(cmds)] == [("GETATTR", 14)]
    # nothing passes the WRITE, and nothing goes while it is outstanding
    cmds = eng.handle(FrameReceived(rep(Op.GETATTR, 14, attr=attr), 7))
    assert [(s[0], s[1]) for s in sent(cmds)] == [("WRITE", 16)]
    cmds = eng.handle(FrameReceived(rep(Op.WRITE, 16, size=1), 8))
    assert [(s[0], s[1]) for s in sent(cmds)] == [("GETATTR", 18)]


def test_handles_are_told_apart_by_node_and_a_release_goes_early() -> None:
    # the daemon hands out the same fh (a freed pointer) to the next file opened: a READ of
    # the second file may pass the first file's RELEASE, and the second file's RELEASE goes
    # as soon as nothing before it names its node
    recs = recording(
        (K, req(Op.LOOKUP, 4, 1, name="a")), (D, rep(Op.LOOKUP, 4, **entry(5))),
        (K, req(Op.OPEN, 6, 5, flags=0)), (D, rep(Op.OPEN, 6, fh=7)),
        (K, req(Op.READ, 8, 5, fh=7, offset=0, size=3)), (D, rep(Op.READ, 8, data=b"abc")),
        (K, req(Op.RELEASE, 10, 5, fh=7)), (D, rep(Op.RELEASE, 10)),
        (K, req(Op.LOOKUP, 12, 1, name="b")), (D, rep(Op.LOOKUP, 12, **entry(6))),
        (K, req(Op.OPEN, 14, 6, flags=0)), (D, rep(Op.OPEN, 14, fh=7)),
        (K, req(Op.READ, 16, 6, fh=7, offset=0, size=3)), (D, rep(Op.READ, 16, data=b"abc")),
        (K, req(Op.RELEASE, 18, 6, fh=7)), (D, rep(Op.RELEASE, 18)),
    )  # fmt: skip
    eng = started(recs, window=8)

    def step(reply: bytes, t: int) -> list[tuple[str, int, int, int]]:
        return [
            (s[0], s[1], s[2], s[3].get("fh", 0)) for s in sent(eng.handle(FrameReceived(reply, t)))
        ]

    assert step(INIT_REP, 1) == [("LOOKUP", 4, 1, 0), ("LOOKUP", 12, 1, 0)]
    # the second file's OPEN goes early: nothing before it names node 6 (60 live)
    assert step(rep(Op.LOOKUP, 12, **entry(60)), 2) == [("OPEN", 14, 60, 0)]
    # its READ names (node 6, fh 7), not the (node 5, fh 7) the unsent RELEASE 10 ends
    assert step(rep(Op.OPEN, 14, fh=71), 3) == [("READ", 16, 60, 71)]
    # answered: its RELEASE goes, before the first file's requests
    assert step(rep(Op.READ, 16, data=b"abc"), 4) == [("RELEASE", 18, 60, 71)]
    assert step(rep(Op.LOOKUP, 4, **entry(50)), 5) == [("OPEN", 6, 50, 0)]
    assert step(rep(Op.OPEN, 6, fh=70), 6) == [("READ", 8, 50, 70)]
    assert step(rep(Op.READ, 8, data=b"abc"), 7) == [("RELEASE", 10, 50, 70)]
    assert step(rep(Op.RELEASE, 18), 8) == []
    done = finish(eng.handle(FrameReceived(rep(Op.RELEASE, 10), 9)))
    assert done is not None and done.result.differences == [] and done.result.sent == 9


def test_failed_lookup_makes_its_dependents_not_sent_under_one_difference() -> None:
    recs = recording(
        (K, req(Op.LOOKUP, 4, 1, name="one")), (D, rep(Op.LOOKUP, 4, **entry(5))),
        (K, req(Op.OPEN, 6, 5, flags=0)), (D, rep(Op.OPEN, 6, fh=7)),
        (K, req(Op.READ, 8, 5, fh=7, offset=0, size=3)),
        (K, req(Op.READ, 10, 5, fh=7, offset=3, size=3)),
        (D, rep(Op.READ, 8, data=b"abc")), (D, rep(Op.READ, 10, data=b"def")),
        (K, req(Op.FLUSH, 12, 5, fh=7)), (D, rep(Op.FLUSH, 12)),
        (K, req(Op.RELEASE, 14, 5, fh=7)), (D, rep(Op.RELEASE, 14)),
        (K, req(Op.GETATTR, 16, 1)), (D, rep(Op.GETATTR, 16, attr=entry(1)["attr"])),
        (K, req(Op.FORGET, 18, 5, nlookup=1)),
    )  # fmt: skip
    eng = started(recs)
    eng.handle(FrameReceived(INIT_REP, 1))
    cmds = eng.handle(FrameReceived(rep(Op.LOOKUP, 4, error=-2), 2))
    # nothing naming node 5 goes out, nor the FORGET of a node never given: only GETATTR
    assert [s[0] for s in sent(cmds)] == ["GETATTR"]
    done = finish(eng.handle(FrameReceived(rep(Op.GETATTR, 16, attr=entry(1)["attr"]), 3)))
    assert done is not None
    (d,) = done.result.differences
    assert d.line() == (
        'frame 3 LOOKUP "one": recorded entry nodeid 5, live -2 ENOENT; '
        "6 later requests not sent (READ ×2, OPEN, FLUSH, RELEASE, FORGET)"  # noqa: RUF001
    )
    assert done.result.not_sent == 6 and done.result.outcome is Outcome.COMPLETED


def test_failed_create_makes_write_flush_release_skip() -> None:
    recs = recording(
        (K, req(Op.CREATE, 4, 1, flags=0o101, mode=0o100644, name="new")),
        (D, rep(Op.CREATE, 4, **entry(5), fh=9)),
        (K, req(Op.WRITE, 6, 5, fh=9, offset=0, size=2, data=b"hi")),
        (D, rep(Op.WRITE, 6, size=2)),
        (K, req(Op.FLUSH, 8, 5, fh=9)), (D, rep(Op.FLUSH, 8)),
        (K, req(Op.RELEASE, 10, 5, fh=9)), (D, rep(Op.RELEASE, 10)),
    )  # fmt: skip
    eng = started(recs)
    eng.handle(FrameReceived(INIT_REP, 1))
    cmds = eng.handle(FrameReceived(rep(Op.CREATE, 4, error=-13), 2))
    done = finish(cmds)
    assert sent(cmds) == [] and done is not None
    (d,) = done.result.differences
    assert (d.frame, d.field, d.live) == (3, "error", "-13 EACCES")
    assert d.dependents == {"WRITE": 1, "FLUSH": 1, "RELEASE": 1}


def test_listing_order_is_free_by_default_and_compared_when_strict() -> None:
    def ents(names: list[str]) -> list[dict[str, Any]]:
        return [{"ino": 9, "off": i + 1, "type": 8, "name": n} for i, n in enumerate(names)]

    def run(strict: bool) -> list[tuple[str, str, str, str]]:
        recs = recording(
            (K, req(Op.OPENDIR, 4, 1, flags=0)), (D, rep(Op.OPENDIR, 4, fh=3)),
            (K, req(Op.READDIR, 6, 1, fh=3, offset=0, size=4096)),
            (D, rep(Op.READDIR, 6, entries=ents(["a", "b", "c"]))),
            (K, req(Op.READDIR, 8, 1, fh=3, offset=3, size=4096)), (D, rep(Op.READDIR, 8)),
            (K, req(Op.RELEASEDIR, 10, 1, fh=3)), (D, rep(Op.RELEASEDIR, 10)),
        )  # fmt: skip
        eng = started(recs, policy=MatchPolicy.build(strict=strict))
        eng.handle(FrameReceived(INIT_REP, 1))
        eng.handle(FrameReceived(rep(Op.OPENDIR, 4, fh=30), 2))
        live = rep(Op.READDIR, 6, entries=ents(["c", "a", "b"]))
        (cont,) = sent(eng.handle(FrameReceived(live, 3)))
        # the recording continued after its last entry, "c": the replay continues after the
        # last entry the live daemon gave, "b", as the kernel would
        assert cont[3]["offset"] == 3
        eng.handle(FrameReceived(rep(Op.READDIR, 8), 4))
        done = finish(eng.handle(FrameReceived(rep(Op.RELEASEDIR, 10), 5)))
        assert done is not None
        return [(d.opcode, d.field, d.recorded, d.live) for d in done.result.differences]

    assert run(strict=False) == []
    assert run(strict=True) == [("READDIR", "entries.order", "a, b, c", "c, a, b")]


def test_allocation_fields_are_a_named_policy() -> None:
    recs = recording((K, req(Op.GETATTR, 4, 1)), (D, rep(Op.GETATTR, 4, attr={"blocks": 8})))
    cases = [(MatchPolicy.build(), []), (MatchPolicy.build(allocation=True), ["attr.attr.blocks"])]
    for policy, expected in cases:
        eng = started(recs, policy=policy)
        eng.handle(FrameReceived(INIT_REP, 1))
        done = finish(eng.handle(FrameReceived(rep(Op.GETATTR, 4, attr={"blocks": 16}), 2)))
        assert done is not None
        assert [d.field for d in done.result.differences] == expected


def test_the_recording_is_read_as_the_replay_goes() -> None:
    taken = [0]

    def frames() -> Any:
        attr = entry(1)["attr"]
        pairs = [((K, req(Op.GETATTR, u, 1)), (D, rep(Op.GETATTR, u, attr=attr)))
                 for u in range(4, 404, 2)]  # fmt: skip
        base = recording(*[f for pair in pairs for f in pair])
        for r in base:
            taken[0] += 1
            yield r

    eng = started(frames())  # type: ignore[arg-type]
    assert taken[0] < 10  # the constructor read up to the INIT reply and a little more
    eng.handle(FrameReceived(INIT_REP, 1))
    assert taken[0] < 10


def test_memory_stays_flat_as_the_capture_grows(tmp_path: Any) -> None:
    """Replay (engine, capture reader, tracker) in a subprocess over a short and a six times
    longer capture of the same exchanges: peak RSS must not follow the length. (A 2,000,000-
    frame capture replayed by the CLI against squashfuse_ll is measured by hand: see
    tests/replay/bigcapture.py.)"""
    import subprocess
    import sys

    from tests.support.mount import fusetrace_env

    def peak(frames: int) -> int:
        path = str(tmp_path / f"{frames}.pcapng")
        run = [sys.executable, "-m", "tests.replay.bigcapture"]
        env = fusetrace_env()
        subprocess.run([*run, path, str(frames)], check=True, env=env, capture_output=True)
        out = subprocess.run([*run, "--measure", path], check=True, env=env,
                             capture_output=True, text=True).stdout  # fmt: skip
        got, rss_kib = map(int, out.split())
        assert got >= frames
        return rss_kib

    short, long = peak(20_000), peak(120_000)
    # holding the frames would add ~35 MB here (the whole capture held took 267 MB for 375k)
    assert long - short < 8 * 1024, (short, long)
