"""The tracker's shared state: bounded memories and the session transitions."""

from __future__ import annotations

from fusetrace.tracker.state import SESSION_TRANSITIONS, SessionEvent, SessionState, _Memory


def test_memory_keeps_the_newest_and_evicts_in_order() -> None:
    m = _Memory(cap=3)
    for k in range(5):
        m.add(k, k * 10)
    assert len(m) == 3 and 0 not in m and m.get(4) == 40
    m.add(2, 99)  # re-adding moves it to the newest end
    m.add(5, 50)
    assert 3 not in m and m.get(2) == 99
    assert m.pop(2) == 99 and m.pop(2) is None


def test_session_transitions() -> None:
    key = (SessionState.UNINIT, SessionEvent.INIT_REQUEST)
    assert SESSION_TRANSITIONS[key] is SessionState.AWAIT_INIT_REPLY
