"""Quantities as every report prints them. Pure."""

from __future__ import annotations


def latency(ns: int | None, *, sep: str = "", micro: str = "us", missing: str = "-") -> str:
    """A latency with three significant figures at most: ``4.2us`` below 10 µs, ``420us``
    below 10 ms, ``42.0ms`` above; ``missing`` for none. ``sep`` goes between number and
    unit, ``micro`` names microseconds (HTML: ``sep=" ", micro="µs"``)."""
    if ns is None:
        return missing
    if ns < 10_000:
        return f"{ns / 1000:.1f}{sep}{micro}"
    if ns < 10_000_000:
        return f"{ns // 1000}{sep}{micro}"
    return f"{ns / 1e6:.1f}{sep}ms"
