"""The forwarding path is chosen before any of it is imported."""

from __future__ import annotations

import subprocess
import sys

import pytest

from fusetrace.errors import EnvironmentProblem
from fusetrace.proxy import choice
from tests.support.mount import fusetrace_env


def test_forward_env_chooses_with_or_without_the_core() -> None:
    assert choice.choose({}, compiled=True) == "c"
    assert choice.choose({choice.ENV: " Python "}, compiled=True) == "python"
    assert choice.choose({choice.ENV: "auto"}, compiled=False) == "python"
    with pytest.raises(EnvironmentProblem, match="is not one of auto, c, python"):
        choice.choose({choice.ENV: "rust"}, compiled=True)
    with pytest.raises(EnvironmentProblem, match="was not built"):
        choice.choose({choice.ENV: "c"}, compiled=False)


def test_the_recorder_starts_its_daemon_before_loading_the_forwarding_path() -> None:
    """What ``fusetrace record`` imports before it starts the daemon: the command, the
    mount and daemon helpers and the session, none of the forwarding path (loaded while the
    daemon starts), the capture writer, the schemas (construct), the tracker or the other
    hand-offs' modules."""
    code = (
        "import sys; import fusetrace.cli.record, fusetrace.proxy.session; "
        "print(' '.join(sorted(sys.modules)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env=fusetrace_env(), capture_output=True, text=True,
        check=True, cwd="/",
    ).stdout.split()  # fmt: skip
    assert "fusetrace.proxy.choice" in out
    for late in ("fusetrace.proxy.core", "fusetrace.proxy.forward", "fusetrace.proxy.output",
                 "fusetrace.proxy.wire", "fusetrace.capture.pcapng", "fusetrace.proxy.seccomp",
                 "fusetrace.proxy.fusermount", "fusetrace.protocol.registry", "fusetrace.tracker",
                 "construct", "shutil", "ctypes.util"):  # fmt: skip
        assert late not in out, late
    # and they are there once the session loads them
    code = "import sys; from fusetrace.proxy import session; session.load_forwarding(); " + (
        "print(' '.join(sorted(sys.modules)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env=fusetrace_env(), capture_output=True, text=True,
        check=True, cwd="/",
    ).stdout.split()  # fmt: skip
    assert {"fusetrace.proxy.core", "fusetrace.proxy.output", "fusetrace.capture.pcapng"} <= set(
        out
    )
    assert "construct" not in out
