"""Units, dependencies and the FORGETs a kept set needs, on hand-built sessions."""

from __future__ import annotations

from fusetrace.protocol.abi import Opcode
from fusetrace.protocol.decode import decode_request
from fusetrace.reduce.closure import build
from fusetrace.tracker import Severity, Tracker
from tests.reduce.session import Session


def file_session() -> tuple[Session, dict[str, int]]:
    s = Session()
    at: dict[str, int] = {}
    at["init"] = s.init()
    at["lookup_d"] = s.lookup(1, "d", 2, directory=True)
    at["getattr_root"] = s.call(Opcode.GETATTR, {}, 1, {"attr": {"ino": 1, "mode": 0o40755}})
    at["lookup_f"] = s.lookup(2, "f", 3)
    at["lookup_g"] = s.lookup(2, "g", 4)
    at["lookup_f2"] = s.lookup(2, "f", 3)
    at["open"] = s.open(3, 10)
    at["read"] = s.read(3, 10, b"hello")
    at["release"] = s.release(3, 10)
    at["opendir"] = s.open(2, 20, Opcode.OPENDIR)
    at["readdir"] = s.call(Opcode.READDIR, {"fh": 20, "size": 4096}, 2, {"entries": []})
    at["releasedir"] = s.release(2, 20, Opcode.RELEASEDIR)
    at["forget_f"] = s.forget(3, 2)
    at["forget_g"] = s.forget(4, 1)
    at["forget_d"] = s.send(Opcode.BATCH_FORGET, {"forgets": [{"nodeid": 2, "nlookup": 1}]})
    return s, at


def test_a_read_keeps_its_lookup_chain_open_and_release() -> None:
    s, at = file_session()
    g = build(s.records)
    kept = g.close([g.unit_of[at["read"]]])
    firsts = sorted(g.units[u].first for u in kept)
    # INIT, LOOKUP d, the last LOOKUP f before the OPEN, OPEN, READ, and the OPEN's RELEASE
    assert firsts == [at["init"], at["lookup_d"], at["lookup_f2"], at["open"], at["read"],
                      at["release"]]  # fmt: skip
    assert g.units[g.unit_of[at["read"]]].frames == [at["read"], at["read"] + 1]


def test_readdir_needs_opendir_and_brings_releasedir() -> None:
    s, at = file_session()
    g = build(s.records)
    kept = g.close([g.unit_of[at["readdir"]]])
    firsts = {g.units[u].first for u in kept}
    assert {at["opendir"], at["releasedir"], at["lookup_d"]} <= firsts
    assert at["open"] not in firsts


def test_forgets_are_rewritten_to_the_kept_lookups() -> None:
    s, at = file_session()
    g = build(s.records)
    kept = g.close([g.unit_of[at["read"]]])
    pairs = g.frames(kept)
    forgets = {i: decode_request(r.data) for i, r in pairs if i not in g.unit_of}
    # f was looked up twice in the recording, once in the result: FORGET 1, not 2; g not
    # kept: no FORGET; d: its BATCH_FORGET is kept
    assert set(forgets) == {at["forget_f"], at["forget_d"]}
    assert forgets[at["forget_f"]].body["nlookup"] == 1
    assert forgets[at["forget_f"]].header.nodeid == 3
    assert forgets[at["forget_d"]].body["forgets"] == [{"nodeid": 2, "nlookup": 1}]
    records, origin = g.records_for(kept)
    assert [r.index for r in records] == list(range(len(records)))
    assert origin == sorted(origin)
    # the result is a session the checker finds nothing wrong with
    t = Tracker(strict=True)
    found = [f for r in records for f in t.feed(r)] + t.finish()
    assert [f.describe() for f in found if f.severity > Severity.INFO] == []


def test_whole_capture_closed_is_the_capture() -> None:
    s, _ = file_session()
    g = build(s.records)
    everything = g.close(range(len(g.units)))
    assert [r.data for _, r in g.frames(everything)] == [r.data for r in s.records]


def test_interrupt_needs_its_target_and_unpaired_replies_stand_alone() -> None:
    s = Session()
    s.init()
    read = s.send(Opcode.GETATTR, {}, 1)
    target_unique = s.unique
    intr = s.send(Opcode.INTERRUPT, {"unique": target_unique})
    stray = s.reply_again(Opcode.GETATTR, 999, -2)
    g = build(s.records)
    assert g.unit_of[read] in g.units[g.unit_of[intr]].deps
    assert g.units[g.unit_of[stray]].kind == "stray"
    assert g.close([g.unit_of[stray]]) == {g.unit_of[0], g.unit_of[stray]}


def test_notifications_need_their_node_and_a_retrieve_brings_its_answer() -> None:
    from fusetrace.protocol.abi import NotifyCode

    s = Session()
    s.init()
    look = s.lookup(1, "f", 2)
    store = s.notify(NotifyCode.STORE, {"nodeid": 2, "offset": 0, "data": b"abc"})
    retrieve = s.notify(NotifyCode.RETRIEVE,
                        {"notify_unique": 77, "nodeid": 2, "offset": 0, "size": 3})  # fmt: skip
    s.unique = 75  # the kernel answers with the notification's unique
    answer = s.send(Opcode.NOTIFY_REPLY, {"offset": 0, "data": b"abc"}, 2)
    g = build(s.records)
    assert g.unit_of[look] in g.units[g.unit_of[store]].deps
    kept = g.close([g.unit_of[retrieve]])
    assert {g.unit_of[answer], g.unit_of[look]} <= kept


def test_a_listing_from_an_offset_needs_the_listing_before_it() -> None:
    s = Session()
    s.init()
    s.open(1, 20, Opcode.OPENDIR)
    first = s.call(Opcode.READDIR, {"fh": 20, "size": 4096}, 1, {"entries": [
        {"ino": 5, "off": 7, "type": 8, "name": "a"}]})  # fmt: skip
    second = s.call(Opcode.READDIR, {"fh": 20, "offset": 7, "size": 4096}, 1, {"entries": []})
    g = build(s.records)
    assert g.unit_of[first] in g.close([g.unit_of[second]])
    assert g.unit_of[second] not in g.close([g.unit_of[first]])
