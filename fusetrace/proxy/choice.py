"""Which forwarding path a recording takes, decided before any of it is imported.

``FUSETRACE_FORWARD`` asks for ``c`` (the compiled core, :mod:`fusetrace.proxy.core`),
``python`` (:mod:`fusetrace.proxy.forward`) or ``auto`` (the core where it was built). The
recorder decides before it starts the daemon, so that a bad setting stops it before
anything runs, and imports the chosen path while the daemon starts.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from fusetrace.errors import EnvironmentProblem

#: the environment variable that chooses the forwarding path
ENV = "FUSETRACE_FORWARD"
CHOICES = ("auto", "c", "python")


def built() -> bool:
    """True when the compiled core was built with this installation (loads the extension
    alone, not the Python side of the core)."""
    try:
        from fusetrace.proxy import _core  # type: ignore[attr-defined,unused-ignore] # noqa: F401
    except ImportError:  # installed without a C compiler
        return False
    return True


def choose(env: Mapping[str, str] = os.environ, compiled: bool | None = None) -> str:
    """``c`` or ``python``, as ``FUSETRACE_FORWARD`` asks; ``compiled``: whether the core
    was built (found out when not given)."""
    asked = env.get(ENV, "auto").strip().lower() or "auto"
    if asked not in CHOICES:
        raise EnvironmentProblem(
            f"{ENV}={asked!r} is not one of {', '.join(CHOICES)}",
            hint="unset it to let fusetrace choose",
        )
    if asked == "python":
        return "python"
    if built() if compiled is None else compiled:
        return "c"
    if asked == "c":
        raise EnvironmentProblem(
            f"{ENV}=c, but the compiled forwarding core was not built with this installation",
            hint=f"reinstall with a C compiler and the Python headers, or use {ENV}=python",
        )
    return "python"
