"""ddmin on plain lists: minimal results, batches, stopping early."""

from __future__ import annotations

from collections.abc import Callable

from fusetrace.reduce.ddmin import ddmin


def make_tester(
    pred: Callable[[set[int]], bool],
) -> tuple[Callable[[list[list[int]]], list[bool]], list[int]]:
    batches: list[int] = []

    def test(cands: list[list[int]]) -> list[bool]:
        batches.append(len(cands))
        return [pred(set(c)) for c in cands]

    return test, batches


def test_finds_the_two_items_that_matter() -> None:
    test, batches = make_tester(lambda s: {13, 71} <= s)
    assert ddmin(list(range(100)), test) == [13, 71]
    assert max(batches) > 1  # chunks and complements go out as batches


def test_one_item_and_the_empty_set() -> None:
    test, _ = make_tester(lambda s: 5 in s)
    assert ddmin(list(range(10)), test) == [5]
    test, _ = make_tester(lambda s: True)
    assert ddmin(list(range(10)), test) == []


def test_result_is_one_minimal() -> None:
    # passes when it holds at least three of the even numbers below 20
    def pred(s: set[int]) -> bool:
        return len({x for x in s if x % 2 == 0 and x < 20}) >= 3

    test, _ = make_tester(pred)
    got = ddmin(list(range(40)), test)
    assert pred(set(got))
    assert all(not pred(set(got) - {x}) for x in got)


def test_stop_keeps_the_last_passing_configuration() -> None:
    calls = [0]

    def test(cands: list[list[int]]) -> list[bool]:
        calls[0] += 1
        return [7 in c for c in cands]

    got = ddmin(list(range(64)), test, stop=lambda: calls[0] >= 2)
    assert 7 in got and len(got) < 64
