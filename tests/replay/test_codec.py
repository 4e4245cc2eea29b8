"""The registry-driven codec: where requests carry ids, what replies hand out."""

from __future__ import annotations

from typing import Any

from fusetrace.protocol.abi import NotifyCode, Opcode
from fusetrace.protocol.decode import decode_request
from fusetrace.protocol.encode import encode_notify, encode_reply, encode_request
from fusetrace.protocol.session import Negotiated
from fusetrace.replay.codec import IdKind, ProtocolCodec, StepKind

Op = Opcode
C = ProtocolCodec("little")
NEG = Negotiated.default()


def req(op: int, nodeid: int = 0, **body: Any) -> bytes:
    return encode_request(op, body, unique=4, nodeid=nodeid)


def ids(data: bytes) -> list[tuple[IdKind, str, int]]:
    return [(r.kind, r.field, r.value) for r in C.request_ids(data, NEG)]


def test_request_kinds_come_from_the_registry() -> None:
    assert C.request_info(req(Op.GETATTR, 1)).kind is StepKind.REQUEST
    assert C.request_info(req(Op.FORGET, 5, nlookup=1)).kind is StepKind.NO_REPLY
    assert C.request_info(req(Op.BATCH_FORGET, forgets=[])).kind is StepKind.NO_REPLY
    info = C.request_info(encode_request(Op.INTERRUPT, {"unique": 6}, unique=7))
    assert info.kind is StepKind.INTERRUPT and info.target == 6
    assert C.request_info(req(Op.NOTIFY_REPLY, 1, offset=0)).kind is StepKind.NOTIFY_REPLY
    assert C.request_info(req(Op.INIT, major=7, minor=45)).kind is StepKind.INIT


def test_request_id_fields() -> None:
    N, F, K = IdKind.NODEID, IdKind.FH, IdKind.COOKIE
    assert ids(req(Op.READ, 5, fh=7, offset=9)) == [(N, "header.nodeid", 5), (F, "read.fh", 7)]
    assert ids(req(Op.READDIR, 5, fh=7, offset=9)) == [
        (N, "header.nodeid", 5), (F, "read.fh", 7), (K, "read.offset", 9)
    ]  # fmt: skip
    assert ids(req(Op.LINK, 1, oldnodeid=5, newname="x")) == [
        (N, "header.nodeid", 1), (N, "link.oldnodeid", 5)
    ]  # fmt: skip
    assert (N, "rename2.newdir", 8) in ids(req(Op.RENAME2, 1, newdir=8, oldname="a",
                                               newname="b"))  # fmt: skip
    cfr = ids(req(Op.COPY_FILE_RANGE, 5, fh_in=1, nodeid_out=6, fh_out=2))
    assert {(F, "copy_file_range.fh_in", 1), (F, "copy_file_range.fh_out", 2),
            (N, "copy_file_range.nodeid_out", 6)} <= set(cfr)  # fmt: skip
    # GETATTR's fh means something only with FUSE_GETATTR_FH
    assert ids(req(Op.GETATTR, 5, getattr_flags=0, fh=7)) == [(N, "header.nodeid", 5)]
    assert (F, "getattr.fh", 7) in ids(req(Op.GETATTR, 5, getattr_flags=1, fh=7))
    batch = req(Op.BATCH_FORGET, forgets=[{"nodeid": 5, "nlookup": 1}, {"nodeid": 6, "nlookup": 2}])
    # BATCH_FORGET's node ids are counted (and rewritten) through forget_counts/forget_frame
    assert ids(batch) == []
    assert ProtocolCodec().forget_counts(batch, None) == [(5, 1), (6, 2)]
    assert C.forget_counts(batch, NEG) == [(5, 1), (6, 2)]
    assert C.forget_counts(req(Op.FORGET, 9, nlookup=3), NEG) == [(9, 3)]


def test_patch_rewrites_only_the_id_bytes() -> None:
    data = req(Op.COPY_FILE_RANGE, 5, fh_in=1, off_in=77, nodeid_out=6, fh_out=2, len=10)
    refs = C.request_ids(data, NEG)
    new = C.patch(data, [(r, r.value + 1000) for r in refs], NEG)
    d = decode_request(new)
    assert d.nodeid == 1005
    assert (d.body["fh_in"], d.body["nodeid_out"], d.body["fh_out"]) == (1001, 1006, 1002)
    assert (d.body["off_in"], d.body["len"]) == (77, 10)
    assert len(new) == len(data)


def test_reply_ids_and_fields() -> None:
    entry = {"nodeid": 5, "generation": 2, "attr": {"size": 3}}
    body = C.decode_reply(encode_reply(Op.CREATE, {**entry, "fh": 9}, unique=4),
                          req(Op.CREATE, 1, name="f"), NEG)  # fmt: skip
    assert body.ids == [(IdKind.NODEID, "entry.nodeid", 5), (IdKind.FH, "open.fh", 9)]
    assert body.fields["entry.attr.size"] == 3 and body.problems == []
    # GETATTR hands out nothing
    ga = C.decode_reply(encode_reply(Op.GETATTR, {"attr": {"ino": 5}}, unique=4),
                        req(Op.GETATTR, 5), NEG)  # fmt: skip
    assert ga.ids == [] and ga.fields["attr.attr.ino"] == 5
    plus = C.decode_reply(
        encode_reply(Op.READDIRPLUS, {"entries": [{**entry, "off": 1, "type": 8,
                                                   "name": "f"}]}, unique=4),
        req(Op.READDIRPLUS, 1, fh=3), NEG,
    )  # fmt: skip
    assert plus.dirents is not None and plus.dirents[0].name == b"f"
    assert (plus.dirents[0].nodeid, plus.dirents[0].cookie) == (5, 1)
    probe = C.decode_reply(encode_reply(Op.GETXATTR, {"size": 12}, unique=4, probe=True),
                           req(Op.GETXATTR, 1, size=0, name="user.a"), NEG)  # fmt: skip
    assert probe.fields == {"getxattr.size": 12, "getxattr.padding": 0}


def test_handed_ids_read_in_place_match_the_full_decode() -> None:
    entry = {"nodeid": 5, "generation": 2, "attr": {"size": 3}}
    cases = [
        (encode_reply(Op.CREATE, {**entry, "fh": 9}, unique=4), req(Op.CREATE, 1, name="f")),
        (encode_reply(Op.LOOKUP, entry, unique=4), req(Op.LOOKUP, 1, name="f")),
        (encode_reply(Op.OPEN, {"fh": 11}, unique=4), req(Op.OPEN, 5)),
        (encode_reply(Op.GETATTR, {"attr": {"ino": 5}}, unique=4), req(Op.GETATTR, 5)),
    ]
    for reply, request in cases:
        handed = C.handed_ids(reply, request, NEG)
        assert handed is not None and handed == C.decode_reply(reply, request, NEG).ids
    assert C.handed_ids(cases[0][0], cases[0][1], NEG) == [
        (IdKind.NODEID, "entry.nodeid", 5), (IdKind.FH, "open.fh", 9)
    ]  # fmt: skip
    # listings, probes and replies of another length than their layout: the full decode
    plus = encode_reply(Op.READDIRPLUS, {"entries": []}, unique=4)
    assert C.handed_ids(plus, req(Op.READDIRPLUS, 1, fh=3), NEG) is None
    assert C.handed_ids(cases[1][0][:-8], cases[1][1], NEG) is None


def test_ids_apart_only_when_nothing_but_the_ids_differ() -> None:
    F, N = IdKind.FH, IdKind.NODEID
    op = req(Op.OPEN, 5)
    a = encode_reply(Op.OPEN, {"fh": 11, "open_flags": 1}, unique=4)
    b = encode_reply(Op.OPEN, {"fh": 12, "open_flags": 1}, unique=4)
    assert C.ids_apart(a, b, op, NEG, NEG) == ([(F, "open.fh", 11)], [(F, "open.fh", 12)])
    flags = encode_reply(Op.OPEN, {"fh": 12, "open_flags": 2}, unique=4)
    assert C.ids_apart(a, flags, op, NEG, NEG) is None
    lk = req(Op.LOOKUP, 1, name="f")
    e1 = encode_reply(Op.LOOKUP, {"nodeid": 5, "attr": {"size": 3}}, unique=4)
    e2 = encode_reply(Op.LOOKUP, {"nodeid": 6, "attr": {"size": 3}}, unique=4)
    e3 = encode_reply(Op.LOOKUP, {"nodeid": 6, "attr": {"size": 4}}, unique=4)
    assert C.ids_apart(e1, e2, lk, NEG, NEG) == (
        [(N, "entry.nodeid", 5)], [(N, "entry.nodeid", 6)]
    )  # fmt: skip
    assert C.ids_apart(e1, e3, lk, NEG, NEG) is None
    assert C.ids_apart(e1, e2[:-8], lk, NEG, NEG) is None


def test_request_ids_of_a_cut_request_come_from_the_decoder() -> None:
    full = req(Op.READ, 5, fh=7, offset=9, size=4096)
    assert ids(full) == [(IdKind.NODEID, "header.nodeid", 5), (IdKind.FH, "read.fh", 7)]
    # a struct cut short is not read in place: the decoder gives none of its fields
    assert ids(full[:48]) == [(IdKind.NODEID, "header.nodeid", 5)]


def test_notifications_and_notify_reply() -> None:
    info = C.reply_info(
        encode_notify(
            NotifyCode.RETRIEVE, {"notify_unique": 3, "nodeid": 5, "offset": 8, "size": 9}
        )
    )
    assert info.unique == 0 and info.notify_name == "RETRIEVE"
    assert info.retrieve == (3, 5, 8, 9)
    nr = decode_request(C.notify_reply(3, 5, 8, b"abc"))
    assert (nr.name, nr.unique, nr.nodeid) == ("NOTIFY_REPLY", 3, 5)
    assert nr.body["offset"] == 8 and nr.body["data"] == b"abc" and nr.ok
