"""Mount options as the kernel gets them, and mountinfo parsing."""

from __future__ import annotations

import os

import pytest

from fusetrace.proxy import mount as mounts


def test_defaults_are_libfuses() -> None:
    spec = mounts.parse_options([])
    assert spec.flags == mounts.MS_NOSUID | mounts.MS_NODEV
    assert spec.fstype == "fuse"
    assert spec.source("squashfuse_ll") == "squashfuse_ll"
    assert spec.data_string(5, 0o40000, 0, 0) == "fd=5,rootmode=40000,user_id=0,group_id=0"


def test_kernel_options_flags_and_names() -> None:
    opts = mounts.split_options(
        [
            "ro,allow_other",
            "default_permissions,max_read=131072",
            "fsname=img,subtype=squash,suid,noatime",
        ]
    )
    spec = mounts.parse_options(opts)
    assert spec.flags & mounts.MS_RDONLY
    assert spec.flags & mounts.MS_NOATIME
    assert not spec.flags & mounts.MS_NOSUID
    assert spec.flags & mounts.MS_NODEV
    assert spec.data == ["allow_other", "default_permissions", "max_read=131072"]
    assert spec.source("x") == "img" and spec.fstype == "fuse.squash"
    assert spec.given == opts
    assert spec.data_string(7, 0o40000, 0, 0).endswith(
        ",allow_other,default_permissions,max_read=131072"
    )


def test_escaped_comma_stays_in_the_value() -> None:
    assert mounts.split_options(["fsname=a\\,b,ro"]) == ["fsname=a,b", "ro"]


@pytest.mark.parametrize("bad", ["frobnicate", "max_read=lots", "fsname=", "lowerdir=/x"])
def test_options_the_kernel_does_not_take_are_refused(bad: str) -> None:
    with pytest.raises(mounts.MountOptionError):
        mounts.parse_options([bad])


def test_mountinfo_escapes() -> None:
    assert mounts._unescape("/tmp/with\\040space") == "/tmp/with space"
    assert mounts._unescape("/plain") == "/plain"


def test_fuse_mounts_reads_this_namespace() -> None:
    # whatever is mounted, every entry is a FUSE one with a connection number
    for entry in mounts.fuse_mounts():
        assert entry.fstype.startswith(("fuse", "fuseblk"))
        assert entry.conn >= 0
    assert mounts.find_mount("/definitely/not/mounted") is None


def test_check_mountpoint(tmp_path: os.PathLike[str]) -> None:
    path, mode = mounts.check_mountpoint(str(tmp_path))
    assert path == os.path.realpath(tmp_path) and mode == 0o40000


def mounted(path: str) -> list[str]:
    """The optional fields of every mount on ``path`` in mountinfo, bottom first."""
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            parts = line.split()
            if mounts._unescape(parts[4]) == path:
                out.append(" ".join(parts[6 : parts.index("-")]) or "private")
    return out


@pytest.mark.mount
def test_shared_at_reads_the_mount_a_path_lies_on(tmp_path: os.PathLike[str]) -> None:
    where = os.path.realpath(tmp_path)
    inner = os.path.join(where, "inner")
    os.mkdir(inner)
    mounts.sys_mount(where, where, "none", mounts.MS_BIND, "")
    try:
        mounts.sys_mount("none", where, "none", mounts.MS_PRIVATE, "")
        assert not mounts.shared_at(inner)
        mounts.sys_mount("none", where, "none", mounts.MS_SHARED, "")
        assert mounts.shared_at(where) and mounts.shared_at(inner)
        assert mounts.shared_at(where + "-sibling") is mounts.shared_at(os.path.dirname(where))
        assert not mounts.top_is_fuse(where)
    finally:
        mounts.sys_umount(where)
    assert mounted(where) == []
