"""The comparison policy: which fields count, how data and listings are compared."""

from __future__ import annotations

from fusetrace.replay.codec import Dirent, ReplyBody
from fusetrace.replay.matching import (
    DEFAULT_IGNORE,
    FieldDiff,
    MatchPolicy,
    compare_bodies,
    compare_data,
    compare_dirents,
    compare_errors,
    error_name,
)


def test_patterns_match_dotted_names_and_suffixes() -> None:
    p = MatchPolicy.build(["entry.generation", "size"], strict=True)
    assert p.ignores("entry.generation")
    assert not p.ignores("generation") and not p.ignores("other.generation2")
    assert p.ignores("entry.attr.size") and p.ignores("size")
    assert not p.ignores("entry.attr.blksize")  # whole dotted parts only
    assert MatchPolicy.build(["atime"], strict=True).ignores("statx.stat.atime.tv_sec")


def test_defaults_cover_what_varies_and_strict_drops_them() -> None:
    p = MatchPolicy.build()
    for name in (
        "entry.attr.atime",
        "attr.attr.mtimensec",
        "entry.entry_valid",
        "entry.generation",
        "attr.attr.ino",
        "statfs.st.bfree",
        "statx.stat.btime.tv_nsec",
    ):
        assert p.ignores(name), name  # fmt: skip
    for name in ("entry.attr.size", "attr.attr.mode", "open.open_flags", "statfs.st.bsize"):
        assert not p.ignores(name), name
    strict = MatchPolicy.build(strict=True)
    assert not any(strict.ignores(name) for name in DEFAULT_IGNORE)
    assert MatchPolicy.build(["a,b", " c "]).ignore[-3:] == ("a", "b", "c")


def test_data_first_difference_and_length() -> None:
    assert compare_data(b"abc", b"abc") == []
    (d,) = compare_data(b"abcdef", b"abXdef")
    assert d.field == "data" and "offset 2" in d.live and "6 bytes" in d.recorded
    assert compare_data(b"abc", b"abcd") == [FieldDiff("data.length", "3 bytes", "4 bytes")]
    # a recording cut by the snap length: the kept prefix and the real length count
    assert compare_data(b"ab", b"abcd", recorded_len=4) == []
    assert compare_data(b"ab", b"abc", recorded_len=4) == [
        FieldDiff("data.length", "4 bytes", "3 bytes")
    ]


def test_listings_compare_names_and_types_not_cookies() -> None:
    rec = [Dirent(b"a", 8, 1), Dirent(b"b", 4, 2)]
    assert compare_dirents(rec, [Dirent(b"a", 8, 101), Dirent(b"b", 4, 102)]) == []
    (d,) = compare_dirents(rec, [Dirent(b"a", 8, 1), Dirent(b"c", 4, 2)])
    assert d.field == "entries" and "only here: b" in d.recorded and "only here: c" in d.live
    (d,) = compare_dirents(rec, [Dirent(b"a", 8, 1), Dirent(b"b", 8, 2)])
    assert d == FieldDiff("entries[b].type", "4", "8")
    (d,) = compare_dirents(rec, list(reversed(rec)))
    assert d.field == "entries.order"


def test_bodies_skip_mapped_and_ignored_fields() -> None:
    rec = ReplyBody(fields={"entry.nodeid": 5, "entry.attr.size": 3, "entry.attr.atime": 1})
    live = ReplyBody(fields={"entry.nodeid": 50, "entry.attr.size": 4, "entry.attr.atime": 2})
    got = compare_bodies(MatchPolicy.build(), rec, live, mapped={"entry.nodeid"})
    assert got == [FieldDiff("entry.attr.size", "3", "4")]
    live_bad = ReplyBody(fields=dict(rec.fields), problems=["3 bytes after the reply"])
    got = compare_bodies(MatchPolicy.build(), rec, live_bad, mapped={"entry.nodeid"})
    assert got == [FieldDiff("decode", "(clean)", "3 bytes after the reply")]


def test_errors() -> None:
    assert compare_errors(-2, -2) == []
    assert compare_errors(0, -5) == [FieldDiff("error", "0", "-5 EIO")]
    assert error_name(-9999) == "-9999"


def test_first_difference_in_large_data() -> None:
    a = bytes(range(256)) * 1000
    for where in (0, 4095, 4096, 100_000, len(a) - 1):
        b = a[:where] + bytes([a[where] ^ 1]) + a[where + 1 :]
        (d,) = compare_data(a, b)
        assert f"offset {where} " in d.live
