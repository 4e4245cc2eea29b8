"""The fusermount stand-in: parsing what the daemon asks for."""

from __future__ import annotations

import json

import pytest

from fusetrace.proxy import fusermount


def request(*argv: str, cwd: str = "/home/u") -> bytes:
    return json.dumps({"argv": list(argv), "cwd": cwd}).encode()


def test_mount_request_as_libfuse_sends_it() -> None:
    req = fusermount.parse_request(
        request("-o", "rw,nosuid,nodev,fsname=a\\,b,subtype=unionfs", "--", "mnt")
    )
    assert not req.unmount
    assert req.mountpoint == "/home/u/mnt"
    assert req.options == ["rw", "nosuid", "nodev", "fsname=a,b", "subtype=unionfs"]


def test_unmount_request() -> None:
    req = fusermount.parse_request(request("-u", "-q", "-z", "--", "/mnt/x"))
    assert req.unmount and req.mountpoint == "/mnt/x"


def test_unknown_fusermount_flag_is_refused() -> None:
    with pytest.raises(ValueError, match="-x"):
        fusermount.parse_request(request("-x", "--", "/m"))
    with pytest.raises(ValueError, match="mountpoint"):
        fusermount.parse_request(request("-o", "ro"))


def test_libfuse_only_options_are_not_passed_to_the_kernel() -> None:
    opts = ["nonempty", "auto_unmount", "user=alice", "allow_other", "max_read=4096", "ro"]
    assert fusermount.kernel_options(opts) == ["allow_other", "max_read=4096", "ro"]
