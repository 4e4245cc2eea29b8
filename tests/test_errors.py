"""Exit statuses and the error classes the CLI maps onto them."""

from __future__ import annotations

from fusetrace.errors import CaptureError, DecodeError, ExitCode, FusetraceError


def test_exit_statuses_are_the_documented_ones() -> None:
    assert (ExitCode.OK, ExitCode.FINDINGS, ExitCode.USAGE) == (0, 1, 2)
    assert (ExitCode.BAD_CAPTURE, ExitCode.ENVIRONMENT, ExitCode.INTERRUPTED) == (3, 4, 130)


def test_errors_share_one_base() -> None:
    assert issubclass(CaptureError, FusetraceError) and issubclass(DecodeError, FusetraceError)
    assert "cut short" in str(DecodeError("header cut short"))
