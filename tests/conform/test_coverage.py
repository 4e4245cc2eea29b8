"""Opcode coverage: sent, not reachable (with the kernel's reason), not sent; the table in the
README and the man page is the one the code makes."""

from __future__ import annotations

from pathlib import Path

import pytest

from fusetrace.conform import coverage as cov
from fusetrace.conform.coverage import ConnectionFacts, Coverage, unreachable
from fusetrace.conform.steps import Status, StepResult
from fusetrace.protocol.abi import InitFlag, NotifyCode, Opcode
from fusetrace.protocol.registry import OPS, MountKind

ROOT = Path(__file__).resolve().parents[2]
Op = Opcode
#: what libfuse 3.14's fuse-overlayfs grants (its INIT reply in captures/fuse-overlayfs.pcapng)
OVERLAY = ConnectionFacts(
    daemon_minor=31,
    granted=InitFlag.DO_READDIRPLUS | InitFlag.READDIRPLUS_AUTO | InitFlag.POSIX_ACL,
    enosys=frozenset({Op.COPY_FILE_RANGE_64}),
)


@pytest.mark.parametrize(
    ("opcode", "facts", "reason"),
    [
        (Op.BMAP, ConnectionFacts(), "fuseblk only"),
        (Op.DESTROY, ConnectionFacts(), "fuseblk and virtiofs only"),
        (Op.SYNCFS, ConnectionFacts(kind=MountKind.FUSEBLK), "virtiofs only"),
        (Op.SETUPMAPPING, ConnectionFacts(), "virtiofs only"),
        (Op.CUSE_INIT, ConnectionFacts(), "cuse only"),
        (Op.STATX, ConnectionFacts(kernel_minor=38), "the kernel speaks 7.38; STATX came with"),
        (Op.RENAME2, ConnectionFacts(daemon_minor=22), "the daemon speaks 7.22"),
        (Op.BATCH_FORGET, ConnectionFacts(daemon_minor=15), "the daemon speaks 7.15"),
        (Op.GETLK, OVERLAY, "the daemon does not grant POSIX_LOCKS"),
        (Op.SETLKW, OVERLAY, "does not grant POSIX_LOCKS or FLOCK_LOCKS"),
        (Op.ACCESS, OVERLAY, "the daemon grants POSIX_ACL"),
        (
            Op.ACCESS,
            ConnectionFacts(daemon_minor=31, options=frozenset({"default_permissions"})),
            "mounted with default_permissions",
        ),
        (
            Op.READDIR,
            ConnectionFacts(daemon_minor=31, granted=InitFlag.DO_READDIRPLUS),
            "the daemon grants DO_READDIRPLUS without READDIRPLUS_AUTO",
        ),
        (Op.READDIRPLUS, ConnectionFacts(daemon_minor=31), "does not grant DO_READDIRPLUS"),
        (Op.COPY_FILE_RANGE, ConnectionFacts(), "only after COPY_FILE_RANGE_64 is refused"),
        (Op.NOTIFY_REPLY, ConnectionFacts(), "in answer to a RETRIEVE notification"),
    ],
)
def test_unreachable_names_the_reason(opcode: Opcode, facts: ConnectionFacts, reason: str) -> None:
    why = unreachable(opcode, facts)
    assert why is not None and reason in why


@pytest.mark.parametrize(
    ("opcode", "facts"),
    [
        (Op.BMAP, ConnectionFacts(kind=MountKind.FUSEBLK)),
        (Op.DESTROY, ConnectionFacts(kind=MountKind.FUSEBLK)),
        (Op.SYNCFS, ConnectionFacts(kind=MountKind.VIRTIOFS)),
        (Op.GETLK, ConnectionFacts(daemon_minor=31, granted=InitFlag.POSIX_LOCKS)),
        (Op.SETLK, ConnectionFacts(daemon_minor=31, granted=InitFlag.FLOCK_LOCKS)),
        (Op.READDIR, OVERLAY),
        (Op.READDIRPLUS, OVERLAY),
        (Op.COPY_FILE_RANGE, OVERLAY),
        (Op.COPY_FILE_RANGE, ConnectionFacts(kernel_minor=44)),
        (Op.NOTIFY_REPLY, ConnectionFacts(notifications=frozenset({NotifyCode.RETRIEVE}))),
        (Op.INTERRUPT, OVERLAY),
        (Op.FSYNCDIR, OVERLAY),
        (Op.ACCESS, ConnectionFacts(daemon_minor=31)),
    ],
)
def test_reachable(opcode: Opcode, facts: ConnectionFacts) -> None:
    assert unreachable(opcode, facts) is None


def test_every_opcode_is_marked_once_in_opcode_order() -> None:
    results = [
        StepResult(0, "fsyncdir", (Op.FSYNCDIR,), Status.SKIPPED, None, "read-only filesystem"),
    ]
    got = cov.coverage({"LOOKUP": 3, "GETLK": 1}, OVERLAY, results)
    assert [e.opcode for e in got] == sorted(OPS)
    by = {e.opcode: e for e in got}
    assert by[Op.LOOKUP].status is Coverage.SENT and by[Op.LOOKUP].requests == 3
    # sent wins over "not reachable": the capture is the evidence
    assert by[Op.GETLK].status is Coverage.SENT
    assert by[Op.BMAP].status is Coverage.UNREACHABLE
    assert by[Op.FSYNCDIR].status is Coverage.NOT_SENT
    assert by[Op.FSYNCDIR].reason == "asked for by fsyncdir (skipped: read-only filesystem)"
    assert by[Op.FSYNCDIR].to_dict() == {
        "opcode": "FSYNCDIR",
        "code": 30,
        "status": "not sent",
        "requests": 0,
        "reason": "asked for by fsyncdir (skipped: read-only filesystem)",
    }
    assert sum(cov.counts(got).values()) == len(OPS)


def test_facts_from_the_capture_metadata() -> None:
    facts = ConnectionFacts.from_meta(
        {"mount_type": "fuseblk", "mount_options": ["ro,default_permissions", "max_read=4096"]}
    )
    assert facts.kind is MountKind.FUSEBLK
    assert facts.options == {"ro", "default_permissions", "max_read"}
    assert ConnectionFacts.from_meta(None).kind is MountKind.FUSE


def _block(text: str, marks: tuple[str, str]) -> str:
    start = text.index(marks[0] + "\n") + len(marks[0]) + 1
    return text[start : text.index(marks[1], start)]


def test_the_readme_table_is_the_generated_one() -> None:
    """To regenerate: cov.with_table(text, cov.MARKDOWN_MARKS, cov.table_markdown())."""
    text = (ROOT / "README.md").read_text()
    assert _block(text, cov.MARKDOWN_MARKS) == cov.table_markdown()


def test_the_man_page_table_is_the_generated_one() -> None:
    """To regenerate: cov.with_table(text, cov.ROFF_MARKS, cov.table_roff())."""
    text = (ROOT / "man" / "fusetrace-conform.1").read_text()
    assert _block(text, cov.ROFF_MARKS) == cov.table_roff()


def test_the_table_covers_every_opcode_and_every_plain_mount_one_has_a_step() -> None:
    rows = {row.opcode: row for row in cov.table()}
    assert set(rows) == set(OPS)
    for op, row in rows.items():
        if unreachable(op, ConnectionFacts()) is None and op is not Op.INIT:
            assert row.sent_by not in ("-", ""), op.name
    assert rows[Op.BMAP].condition == "fuseblk only"
    assert "POSIX_LOCKS" in rows[Op.GETLK].condition
