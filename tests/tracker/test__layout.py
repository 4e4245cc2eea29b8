"""The tracker's fast field readers are derived from the schemas, compat sizes included."""

from __future__ import annotations

import dataclasses

from fusetrace.protocol.schemas import field_offset
from fusetrace.protocol.session import Negotiated
from fusetrace.tracker import _layout


def test_readers_sit_where_the_schemas_put_the_fields() -> None:
    r = _layout.Readers("<")
    assert r.entry_nodeid == field_offset("fuse_entry_out", "nodeid") == 0
    assert r.entry_nlink == field_offset("fuse_entry_out", "attr.nlink")
    assert r.dirent_head == 24 and r.direntplus_head == 152


def test_sizes_follow_the_negotiated_minor() -> None:
    new = Negotiated.default()
    old = dataclasses.replace(new, minor=8)
    assert _layout.size_of("fuse_entry_out", new) == 128
    assert _layout.size_of("fuse_entry_out", old) == 120
