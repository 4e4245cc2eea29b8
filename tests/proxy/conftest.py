"""Fixtures shared by the proxy tests."""

from __future__ import annotations

import pytest

from fusetrace.proxy import core

#: the forwarding paths: the Python loops (always there) and the compiled core (when built)
PATHS = [
    "python",
    pytest.param("c", marks=pytest.mark.skipif(not core.available(), reason="core not built")),
]


@pytest.fixture(params=PATHS)
def path(request: pytest.FixtureRequest) -> str:
    """The forwarding path under test, "python" or "c" (see fusetrace/proxy/core.py)."""
    return str(request.param)


@pytest.fixture
def forwarding(path: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """Recordings started by the test forward on ``path`` (FUSETRACE_FORWARD)."""
    monkeypatch.setenv(core.ENV, path)
    return path
