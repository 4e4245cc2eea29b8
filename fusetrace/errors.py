"""The error tree. Each error knows the exit status it maps to (design.md §7).

Protocol violations are not errors: the tracker reports them as findings. These errors are
for what stops a command: a capture that cannot be read, an environment that cannot mount,
a daemon that fails.
"""

from __future__ import annotations


class ExitCode:
    """Exit statuses, decided here and nowhere else."""

    OK = 0
    FINDINGS = 1
    USAGE = 2
    BAD_CAPTURE = 3
    ENVIRONMENT = 4
    #: a bug in fusetrace (sysexits' EX_SOFTWARE); the message asks for a report
    INTERNAL = 70
    INTERRUPTED = 130


class FusetraceError(Exception):
    """Base of every error a command reports as one line and an exit status."""

    exit_code: int = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if self.hint is None else f"{self.message} ({self.hint})"


class CaptureError(FusetraceError):
    """A capture cannot be read: not pcapng, corrupt, wrong link type, empty."""

    exit_code = ExitCode.BAD_CAPTURE


class DecodeError(FusetraceError):
    """A frame cannot be decoded. The decoder raises only this (and its subclasses)."""

    exit_code = ExitCode.BAD_CAPTURE


class EnvironmentProblem(FusetraceError):
    """The machine cannot do what was asked: no root, no /dev/fuse, no such mountpoint."""

    exit_code = ExitCode.ENVIRONMENT


class UsageProblem(FusetraceError):
    """Options that do not go together, found only once the command looks closer (which
    hand-off a daemon gets, for one)."""

    exit_code = ExitCode.USAGE


class DaemonError(FusetraceError):
    """The daemon could not be started, or failed."""

    exit_code = ExitCode.ENVIRONMENT

    def __init__(
        self, message: str, *, hint: str | None = None, exit_code: int | None = None
    ) -> None:
        super().__init__(message, hint=hint)
        if exit_code is not None:
            self.exit_code = exit_code
