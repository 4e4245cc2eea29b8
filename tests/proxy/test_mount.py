"""Mount options as the kernel gets them, and mountinfo parsing."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

from fusetrace.proxy import mount as mounts


def test_defaults_are_libfuses() -> None:
    spec = mounts.parse_options([])
    assert spec.flags == mounts.MS_NOSUID | mounts.MS_NODEV
    assert spec.fstype == "fuse"
    assert spec.source("squashfuse_ll") == "squashfuse_ll"
    assert spec.source() == "/dev/fuse"  # libfuse's and fusermount3's source without names
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


def test_source_is_fsname_else_subtype_as_libfuse_chooses() -> None:
    assert mounts.parse_options(["subtype=sq"]).source() == "sq"
    assert mounts.parse_options(["subtype=sq", "fsname=img"]).source() == "img"
    assert mounts.parse_options(["context=system_u:object_r:tmp_t:s0"]).data == [
        "context=system_u:object_r:tmp_t:s0"
    ]


def test_command_line_options_are_found_as_fuse_opt_parse_finds_them() -> None:
    argv = ["d", "-o", "ro,fsname=a\\,b", "-oallow_other", "img", "-f", "--", "-o", "x"]
    assert mounts.command_line_options(argv) == ["ro", "fsname=a,b", "allow_other"]


def program(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed")
    return path


def test_a_libfuse_daemons_mount_options_come_from_its_command_line() -> None:
    """Mount options are kept in order, library and daemon options left alone, and
    libfuse's default subtype added (squashfuse_ll calls fuse_parse_cmdline) unless a name
    was given."""
    argv = ["squashfuse_ll", "-o", "default_permissions,max_threads=4,ro,offset=0", "i", "{}"]
    found = mounts.daemon_mount_options(argv, program("squashfuse_ll"))
    assert found.options == ["default_permissions", "ro", "subtype=squashfuse_ll"]
    assert found.warnings == []
    argv = ["/x/squashfuse", "-o", "fsname=img,auto_unmount,allow_other", "i", "{}"]
    found = mounts.daemon_mount_options(argv, program("squashfuse"))
    assert found.options == ["fsname=img", "allow_other"]
    spec = mounts.parse_options(found.options)
    assert (spec.fstype, spec.source()) == ("fuse", "img")


def test_options_a_daemon_may_add_by_itself_are_warned_about() -> None:
    """fuse-overlayfs adds default_permissions,allow_other... in its code: under /dev/fd/N
    fusetrace cannot see them, and says so, naming the security options at stake."""
    argv = ["fuse-overlayfs", "-o", "lowerdir=/l,upperdir=/u,workdir=/w", "{}"]
    found = mounts.daemon_mount_options(argv, program("fuse-overlayfs"))
    assert found.options == ["subtype=fuse-overlayfs"]
    (warning,) = found.warnings
    assert "security: default_permissions,allow_other" in warning
    assert "--handoff fusermount" in warning


def test_a_program_that_is_not_libfuse_3_gets_a_warning() -> None:
    found = mounts.daemon_mount_options([sys.executable, "fs.py", "-o", "ro", "{}"], sys.executable)
    assert found.options == []
    (warning,) = found.warnings
    assert "not a libfuse 3 program" in warning and "(ro)" in warning


def mountinfo_entry(mountpoint: Path) -> dict[str, object]:
    """The top mount on ``mountpoint`` as mountinfo shows it: type, source, per-mount and
    superblock options (propagation tags and ids left out: they name the mount, not how)."""
    real = os.path.realpath(mountpoint)
    found = None
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        parts = line.split()
        sep = parts.index("-")
        if mounts._unescape(parts[4]) == real:
            found = {
                "fstype": parts[sep + 1],
                "source": mounts._unescape(parts[sep + 2]),
                "mount options": parts[5],
                "superblock options": parts[sep + 3],
            }
    assert found is not None, f"nothing mounted on {real}"
    return found


def _daemons(tmp: Path) -> dict[str, tuple[list[str], list[str], list[str]]]:
    """name → (native argv with MNT, traced argv, fusetrace record arguments)."""
    from tests.proxy.test_daemon import gocryptfs_cipher_dir
    from tests.support.libfuse import Unavailable, libfuse_build
    from tests.support.trees import make_squashfs

    src = tmp / "src"
    src.mkdir()
    (src / "a").write_text("a\n")
    out: dict[str, tuple[list[str], list[str], list[str]]] = {}
    img = make_squashfs(src, tmp / "img.sqfs")
    out["squashfuse_ll"] = (
        ["squashfuse_ll", "-f", str(img), "MNT"],
        ["squashfuse_ll", "-f", str(img), "{}"],
        [],
    )
    lo, up, wk = (tmp / d for d in ("lo", "up", "wk"))
    for d in (lo, up, wk):
        d.mkdir()
    overlay = ["fuse-overlayfs", "-f", "-o", f"lowerdir={lo},upperdir={up},workdir={wk}", "MNT"]
    out["fuse-overlayfs"] = (overlay, overlay, ["--handoff", "fusermount"])
    out["bindfs"] = (["bindfs", "-f", str(src), "MNT"],) * 2 + ([],)  # type: ignore[assignment]
    cipher, passfile = gocryptfs_cipher_dir(tmp)
    gocryptfs = ["gocryptfs", "-fg", "-passfile", str(passfile), str(cipher), "MNT"]
    out["gocryptfs"] = (gocryptfs, gocryptfs, [])
    try:
        hp = str(libfuse_build() / "example" / "passthrough_hp")
    except Unavailable:
        pass
    else:
        argv = [hp, str(src), "MNT", "--foreground"]
        out["passthrough_hp"] = (argv, argv, ["--handoff", "fusermount"])
    return out


@pytest.mark.mount
@pytest.mark.parametrize(
    "name", ["squashfuse_ll", "fuse-overlayfs", "bindfs", "gocryptfs", "passthrough_hp"]
)
def test_traced_mount_equals_the_native_one(name: str, tmp_path: Path) -> None:
    """Type, source, mount and superblock options of the traced mount are the native ones:
    squashfuse_ll under the /dev/fd/N hand-off (its options read from its command line),
    the others through the fusermount hand-off (their own request)."""
    from tests.support.mount import native_mount, recording

    daemons = _daemons(tmp_path)
    if name not in daemons:
        pytest.skip("libfuse's examples cannot be built here")
    native_argv, traced_argv, record_args = daemons[name]
    if shutil.which(native_argv[0]) is None:
        pytest.skip(f"{native_argv[0]} is not installed")
    mnt = tmp_path / "mnt"
    mnt.mkdir()

    def at(argv: list[str]) -> list[str]:
        return [str(mnt) if a == "MNT" else a for a in argv]

    with native_mount(at(native_argv), mnt):
        native = mountinfo_entry(mnt)
        os.listdir(mnt)  # served (go-fuse finishes mounting after its first requests)
    with recording(
        at(traced_argv), mnt, tmp_path / "t.pcapng", record_args=record_args, check_clean=False
    ) as rec:
        traced = mountinfo_entry(mnt)
        os.listdir(mnt)
    assert rec.returncode == 0, rec.stderr
    assert traced == native
