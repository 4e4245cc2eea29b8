"""The step catalogue: pure data the report, the runner and the coverage table read."""

from __future__ import annotations

from fusetrace.conform import steps
from fusetrace.protocol.abi import Opcode
from fusetrace.protocol.registry import OPS


def test_steps_are_data_with_unique_names_and_opcodes() -> None:
    names = steps.step_names()
    assert len(names) == len(set(names)) >= 45
    for spec in steps.CATALOGUE:
        assert spec.ops, spec.name
        assert all(isinstance(op, Opcode) and op in OPS for op in spec.ops), spec.name
        assert spec.doc, spec.name
    assert names[0] == "statfs" and names[-1] == "cleanup"
    assert steps.BY_NAME["fsyncdir"].ops == (Opcode.FSYNCDIR,)


def test_the_new_steps_ask_for_the_opcodes_they_exist_for() -> None:
    assert steps.steps_sending(Opcode.INTERRUPT) == ["interrupt"]
    assert steps.steps_sending(Opcode.BATCH_FORGET) == ["drop-caches"]
    assert steps.steps_sending(Opcode.SYNCFS) == ["syncfs"]
    assert steps.steps_sending(Opcode.GETLK) == ["posix-locks", "ofd-locks"]


def test_a_result_names_its_opcodes_in_json() -> None:
    r = steps.StepResult(3, "fsync", (Opcode.FSYNC,), steps.Status.FAILED, 5, "EIO")
    assert r.to_dict() == {
        "index": 3,
        "name": "fsync",
        "ops": ["FSYNC"],
        "status": "failed",
        "errno": "EIO",
        "detail": "EIO",
    }
    assert r.marker == ".fusetrace-step-03-fsync"


def test_data_pattern_and_errno_names() -> None:
    data = steps.data_pattern()
    assert len(data) == steps.DATA_SIZE and data[:4096] != data[4096:8192]
    assert steps.errno_name(95) == "EOPNOTSUPP" and steps.errno_name(2) == "ENOENT"
