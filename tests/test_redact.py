"""Redaction on hand-built frames: every name and data field the registry lays out, lengths
kept, pseudonyms stable and distinct, ids mapped, metadata scrubbed."""

from __future__ import annotations

from fusetrace.frame import Direction, Frame
from fusetrace.protocol.abi import S_IFREG, NotifyCode, Opcode
from fusetrace.protocol.decode import decode_request
from fusetrace.protocol.header import IN_HEADER_SIZE, InHeader, pack_in_header
from fusetrace.protocol.stream import FrameDecoder
from fusetrace.redact import Pseudonyms, Redactor, names_in, pattern, scrub_meta
from fusetrace.tracker import Tracker
from tests.reduce.session import Session

SECRET = "s3cret-name"
DATA = b"private file data, private file data"


def session() -> Session:
    s = Session()
    s.init()
    s.lookup(1, SECRET, 2)
    s.lookup(1, "other-name!", 3)  # the same length as SECRET, a different name
    s.call(Opcode.READDIRPLUS, {"fh": 0, "size": 4096}, 1, {"entries": [
        {"nodeid": 0, "ino": 1, "off": 1, "type": 4, "name": "."},
        {"nodeid": 0, "ino": 1, "off": 2, "type": 4, "name": ".."},
        {"nodeid": 2, "ino": 2, "off": 3, "type": 8, "name": SECRET,
         "attr": {"ino": 2, "mode": S_IFREG | 0o644, "uid": 1234, "gid": 5678}},
    ]}, uid=1234, gid=5678, pid=4321)  # fmt: skip
    s.call(Opcode.READ, {"fh": 7, "offset": 0, "size": 4096}, 2, {"data": DATA})
    s.call(Opcode.WRITE, {"fh": 7, "offset": 0, "data": DATA}, 2, {"size": len(DATA)})
    s.call(Opcode.SYMLINK, {"name": "my-link", "target": f"../{SECRET}"}, 1,
           {"nodeid": 4, "attr": {"ino": 4, "mode": 0o120777}})  # fmt: skip
    s.call(Opcode.CREATE, {"flags": 0, "mode": 0o100644, "name": "new-" + SECRET}, 1,
           {"nodeid": 5, "attr": {"ino": 5, "mode": S_IFREG | 0o644}, "fh": 9})  # fmt: skip
    s.call(Opcode.RENAME, {"newdir": 1, "oldname": SECRET, "newname": "renamed"}, 1)
    s.call(Opcode.SETXATTR, {"name": "user.comment", "value": DATA, "size": len(DATA)}, 2)
    s.call(Opcode.GETXATTR, {"name": "security.selinux", "size": 64}, 2, {"value": b"ctx\0"})
    s.call(Opcode.LISTXATTR, {"size": 64}, 2, {"names": ["user.comment", "security.selinux"]})
    s.notify(NotifyCode.INVAL_ENTRY, {"parent": 1, "name": SECRET})
    s.notify(NotifyCode.STORE, {"nodeid": 2, "offset": 0, "data": DATA})
    return s


def redacted(s: Session, **kw: bool) -> list[Frame]:
    r = Redactor(**kw)
    return [r.record(rec) for rec in s.records]


def bodies(records: list[Frame]) -> list[dict]:  # type: ignore[type-arg]
    dec = FrameDecoder()
    out = []
    for rec in records:
        d = dec.feed(rec).decoded
        assert d is not None and d.problems == [], (rec.index, d)
        out.append(d.body)
    return out


def test_names_and_data_are_gone_and_lengths_stay() -> None:
    s = session()
    out = redacted(s)
    assert [len(r.data) for r in out] == [len(r.data) for r in s.records]
    blob = b"".join(r.data for r in out)
    for secret in (SECRET.encode(), DATA[:8], b"private", b"comment", b"renamed", b"my-link"):
        assert secret not in blob, secret
    b = bodies(out)
    lookup = b[2]["name"]
    assert len(lookup) == len(SECRET) and lookup != SECRET
    assert "/" not in lookup and "\0" not in lookup
    assert b[4]["name"] != lookup  # different names stay different
    names = [e["name"] for e in b[7]["entries"]]
    assert names == [".", "..", lookup]  # the same name, the same pseudonym; . and .. kept
    assert b[9]["data"] == pattern(len(DATA))  # READ reply
    assert b[10]["data"] == pattern(len(DATA))  # WRITE request
    assert len(b[12]["target"]) == len(SECRET) + 3 and SECRET not in b[12]["target"]
    assert b[16]["oldname"] == lookup
    assert b[18]["name"].startswith("user.") and b[18]["value"] == pattern(len(DATA))
    assert b[20]["name"] == "security.selinux"  # the kernel's own xattr names stay
    assert b[23]["names"] == [b[18]["name"], "security.selinux"]
    assert b[24]["name"] == lookup  # INVAL_ENTRY
    assert b[25]["data"] == pattern(len(DATA))  # STORE


def test_the_checker_sees_the_same() -> None:
    s = session()

    def found(records: list[Frame]) -> list[str]:
        t = Tracker()
        return [f.describe() for r in records for f in t.feed(r)] + [
            f.describe() for f in t.finish()
        ]

    assert found(redacted(s, map_ids=True)) == found(s.records)


def test_keep_names_keep_data_and_ids() -> None:
    s = session()
    assert [r.data for r in redacted(s, names=False, data=False)] == [r.data for r in s.records]
    out = redacted(s, map_ids=True)
    b = bodies(out)
    dec = FrameDecoder()
    headers = [dec.feed(r).decoded.header for r in out]  # type: ignore[union-attr]
    h = headers[6]
    assert (h.uid, h.gid, h.pid) == (1000, 1000, 1000)  # type: ignore[union-attr]
    assert (headers[0].uid, headers[0].gid) == (0, 0)  # type: ignore[union-attr]
    entry = b[7]["entries"][2]
    assert (entry["attr"]["uid"], entry["attr"]["gid"]) == (1000, 1000)


def test_pseudonyms_are_injective_even_past_the_alphabet() -> None:
    p = Pseudonyms()
    names = [bytes([c]) for c in range(1, 256) if c not in (ord("/"), ord("."))]
    got = [p(n) for n in names]
    assert len(set(got)) == len(names)
    assert all(len(g) == 1 and g not in (b"/", b"\0", b".") for g in got)
    assert p(b".") == b"." and p(b"..") == b".."
    assert p(names[0]) == got[0]


def test_scrub_meta() -> None:
    meta = {
        "fusetrace_capture": 1,
        "daemon": ["/usr/local/bin/myfs", "-o", "ro", "/home/alice/img", "{}"],
        "mountpoint": "/home/alice/mnt",
        "mount_options": {"fsname": "/dev/alice", "ro": None},
        "mount_source": "alicebox-data",
        "kernel_release": "6.1.0",
    }
    out = scrub_meta(meta, ["alicebox"])
    assert out["daemon"] == ["myfs", "-o", "ro", "<redacted>", "{}"]
    assert out["mountpoint"] is None
    assert out["mount_options"] == {"fsname": "<redacted>", "ro": None}
    assert out["mount_source"] == "<redacted>"
    assert out["kernel_release"] == "6.1.0" and out["fusetrace_capture"] == 1


def test_no_original_name_comes_back_as_a_pseudonym() -> None:
    s = Session()
    s.init()
    s.lookup(1, "zzzz", 2)
    s.lookup(1, "aaaa", 3)  # would be the first pseudonym of a 4-byte name
    names = names_in(s.records)
    assert names == {b"zzzz", b"aaaa"}
    r = Redactor(avoid=names)
    out = [r.record(rec) for rec in s.records]
    got = {r.pseudonyms.map[n] for n in names}
    assert not got & names
    blob = b"".join(rec.data for rec in out)
    assert b"zzzz" not in blob and b"aaaa" not in blob


def test_supplementary_groups_are_mapped_with_the_gids() -> None:
    s = Session()
    s.init()
    ext = [{"type": "supp_groups", "groups": [5678, 0, 4242]}]
    s.call(Opcode.MKDIR, {"mode": 0o755, "name": "d", "ext": ext}, 1,
           {"nodeid": 2, "attr": {"ino": 2, "mode": 0o40755}}, gid=5678)  # fmt: skip
    out = redacted(s, map_ids=True, names=False)
    b = bodies(out)
    assert b[2]["ext"][0]["groups"] == [1000, 0, 1001]
    assert decode_request(out[2].data).header.gid == 1000  # type: ignore[union-attr]


def test_what_the_decoder_cannot_place_goes_too() -> None:
    s = Session()
    s.init()
    look = s.lookup(1, "x", 2)
    # a LOOKUP reply with the secret after the entry (the header's len counts it)
    reply = bytearray(s.records[look + 1].data + SECRET.encode())
    reply[0:4] = len(reply).to_bytes(4, "little")
    s.records[look + 1] = s.records[look + 1]._replace(data=bytes(reply), orig_len=len(reply))
    # a request of an opcode nobody knows, the secret as its body
    body = SECRET.encode()
    head = pack_in_header(InHeader(IN_HEADER_SIZE + len(body), 4000, 99, 1, 0, 0, 0, 0, 0))
    s.records.append(Frame(len(s.records), 0, Direction.INBOUND, head + body, 40 + len(body)))
    out = redacted(s)
    assert [len(r.data) for r in out] == [len(r.data) for r in s.records]
    assert SECRET.encode() not in b"".join(r.data for r in out)
