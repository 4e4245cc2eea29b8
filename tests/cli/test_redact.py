"""``fusetrace redact`` on a real recording whose names, contents, link targets and xattrs
carry a canary: nothing of it survives, while check and decode --stats see the same."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from fusetrace.capture.files import open_capture
from tests.support.mount import fusetrace_cmd, fusetrace_env, recording

CANARY = "Zq7canaryXw9"


def fusetrace(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(fusetrace_cmd(*args), capture_output=True, text=True,
                          env=fusetrace_env(), timeout=120)  # fmt: skip


def windows(data: bytes, n: int = 8) -> set[bytes]:
    return {data[i : i + n] for i in range(len(data) - n + 1)}


@pytest.fixture(scope="module")
def canary_recording(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[bytes]]:
    """A squashfuse_ll recording over names and data full of the canary; returns the
    capture and every original name and content (bytes)."""
    if shutil.which("squashfuse_ll") is None or shutil.which("mksquashfs") is None:
        pytest.skip("needs squashfuse_ll and mksquashfs")
    if os.geteuid() != 0 or not os.path.exists("/dev/fuse"):
        pytest.skip("needs root and /dev/fuse")
    root = tmp_path_factory.mktemp("redact")
    src = root / f"src-{CANARY}"
    secrets: list[bytes] = []
    sub = src / f"dir-{CANARY}"
    sub.mkdir(parents=True)
    for k in range(12):
        name = f"{CANARY}-file-{k:02d}.txt"
        body = f"private {CANARY} content number {k} ".encode() * (k + 1)
        (sub / name).write_bytes(body)
        secrets += [name.encode(), body]
    os.symlink(f"../{CANARY}/target-of-the-link", sub / f"link-{CANARY}")
    secrets += [f"link-{CANARY}".encode(), f"../{CANARY}/target-of-the-link".encode()]
    xattrs = True
    try:
        os.setxattr(sub / f"{CANARY}-file-00.txt", f"user.{CANARY}", f"value-{CANARY}".encode())
        secrets += [f"user.{CANARY}".encode()[5:], f"value-{CANARY}".encode()]
    except OSError:
        xattrs = False
    secrets.append(f"dir-{CANARY}".encode())
    image = root / f"{CANARY}.sqfs"
    subprocess.run(["mksquashfs", str(src), str(image), "-noappend", "-quiet", "-no-progress"],
                   check=True, capture_output=True)  # fmt: skip
    mnt = root / f"mnt-{CANARY}"
    mnt.mkdir()
    cap = root / "canary.pcapng"
    with recording(["squashfuse_ll", str(image), "{}"], mnt, cap):
        d = mnt / f"dir-{CANARY}"
        for name in sorted(os.listdir(d)):
            p = d / name
            if p.is_symlink():
                assert CANARY in os.readlink(p)
            else:
                assert CANARY.encode() in p.read_bytes()
        if xattrs:
            assert os.listxattr(d / f"{CANARY}-file-00.txt")
            os.getxattr(d / f"{CANARY}-file-00.txt", f"user.{CANARY}")
    raw = cap.read_bytes()
    assert CANARY.encode() in raw
    return cap, secrets


@pytest.mark.mount
def test_nothing_of_the_canary_survives(canary_recording: tuple[Path, list[bytes]],
                                        tmp_path: Path) -> None:  # fmt: skip
    cap, secrets = canary_recording
    out = tmp_path / "shareable.pcapng"
    r = fusetrace("redact", str(cap), "-w", str(out), "--map-ids")
    assert r.returncode == 0, r.stderr
    assert "pseudonymised" in r.stderr
    raw = out.read_bytes()
    assert len(raw) > 1000
    for needle in windows(CANARY.encode()):
        assert needle not in raw, needle
    for secret in secrets:
        for needle in windows(secret):
            assert needle not in raw, (secret, needle)

    # the same findings and the same counts
    def findings(path: Path) -> list[dict]:  # type: ignore[type-arg]
        c = fusetrace("check", "--format", "json", str(path))
        assert c.returncode in (0, 1), c.stderr
        doc = json.loads(c.stdout)
        (one,) = doc["captures"]
        assert one["summary"]["frames"] > 100
        return one["findings"]  # type: ignore[no-any-return]

    assert findings(out) == findings(cap)
    stats = [fusetrace("decode", "--stats", str(p)) for p in (cap, out)]
    assert stats[0].returncode == 0 and stats[0].stdout
    assert stats[0].stdout == stats[1].stdout

    with open_capture(str(out)) as reader:
        frames = list(reader)
        meta = reader.info.meta
    with open_capture(str(cap)) as reader:
        before = list(reader)
    assert [len(f.data) for f in frames] == [len(f.data) for f in before]
    assert meta["daemon"][0] == "squashfuse_ll" and meta["mountpoint"] is None


@pytest.mark.mount
def test_keep_names_and_data_for_private_use(canary_recording: tuple[Path, list[bytes]],
                                             tmp_path: Path) -> None:  # fmt: skip
    cap, _ = canary_recording
    out = tmp_path / "private.pcapng"
    r = fusetrace("redact", str(cap), "-w", str(out), "--keep-names", "--keep-data")
    assert r.returncode == 0, r.stderr
    with open_capture(str(out)) as a, open_capture(str(cap)) as b:
        assert [f.data for f in a] == [f.data for f in b]


def test_unreadable_capture_is_one_line_exit_3(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pcapng"
    bad.write_bytes(b"not a capture at all")
    r = fusetrace("redact", str(bad), "-w", str(tmp_path / "out.pcapng"))
    assert r.returncode == 3
    assert r.stderr.startswith("fusetrace: error:") and len(r.stderr.splitlines()) == 1
    r = fusetrace("redact", str(bad))
    assert r.returncode == 2


def test_redacted_capture_replays_as_far_as_the_data_allows(tmp_path: Path) -> None:
    """Names kept, data redacted: a replay against the same daemon runs to its end, and
    differs only where the data was (READ, READLINK)."""
    import sys

    from tests.replay.kernel import FAKEFS, record_fakefs_session

    cap = tmp_path / "fake.pcapng"
    record_fakefs_session(str(cap))
    out = tmp_path / "red.pcapng"
    r = fusetrace("redact", str(cap), "-w", str(out), "--keep-names", "--map-ids")
    assert r.returncode == 0, r.stderr
    rep = fusetrace("replay", "--format", "json", str(out), "--", sys.executable, FAKEFS, "{}")
    assert rep.returncode == 1, rep.stderr
    doc = json.loads(rep.stdout)
    assert doc["differences"]
    assert {(d["opcode"], d["field"]) for d in doc["differences"]} <= {
        ("READ", "data"),
        ("READLINK", "data"),
        ("READLINK", "target"),
    }
