"""Negotiated is what the kernel would store after the INIT pair (protocol.md §4.1)."""

from __future__ import annotations

from fusetrace.protocol.abi import InitFlag
from fusetrace.protocol.session import Negotiated

EXT = int(InitFlag.INIT_EXT)


def test_default_is_newest_minor_nothing_accepted() -> None:
    n = Negotiated.default("big")
    assert (n.minor, n.flags, n.order, n.initialized) == (45, InitFlag(0), ">", False)


def test_request_side() -> None:
    n = Negotiated().with_init_request(
        {"major": 7, "minor": 40, "max_readahead": 4096, "flags": EXT | 1, "flags2": 1}
    )
    assert n.kernel_minor == 40 and n.max_readahead == 4096
    assert n.offered == InitFlag.INIT_EXT | InitFlag.ASYNC_READ | InitFlag.SECURITY_CTX


def test_flags2_counts_only_with_init_ext() -> None:
    n = Negotiated().with_init_reply({"major": 7, "minor": 45, "flags": 1, "flags2": 1})
    assert n.flags == InitFlag.ASYNC_READ
    n = Negotiated().with_init_reply({"major": 7, "minor": 45, "flags": EXT, "flags2": 1})
    assert n.accepted(InitFlag.SECURITY_CTX)


def test_reply_minor_rules() -> None:
    n = Negotiated().with_init_reply({"major": 7, "minor": 5, "flags": 1, "max_write": 100})
    assert n.flags == InitFlag(0) and n.max_write == 4096 and n.minor == 5
    n = Negotiated().with_init_reply({"major": 7, "minor": 4, "max_write": 1 << 20})
    assert n.max_write == 4096
    n = Negotiated().with_init_reply(
        {
            "major": 7,
            "minor": 31,
            "max_write": 1 << 20,
            "max_background": 0,
            "congestion_threshold": 0,
        }
    )
    assert n.max_write == 1 << 20 and n.max_background == 12 and n.congestion_threshold == 9
    assert n.initialized and not n.failed


def test_max_pages_and_timeout_need_their_flags() -> None:
    n = Negotiated().with_init_reply(
        {"major": 7, "minor": 45, "max_pages": 32, "request_timeout": 30}
    )
    assert n.max_pages == 0 and n.request_timeout == 0
    flags, flags2 = (InitFlag.MAX_PAGES | InitFlag.INIT_EXT | InitFlag.REQUEST_TIMEOUT).words()
    n = Negotiated().with_init_reply(
        {
            "major": 7,
            "minor": 45,
            "flags": flags,
            "flags2": flags2,
            "max_pages": 32,
            "request_timeout": 30,
        }
    )
    assert n.max_pages == 32 and n.request_timeout == 30


def test_failures() -> None:
    assert Negotiated().with_init_reply({}, error=-71).failed
    n = Negotiated().with_init_reply({"major": 8, "minor": 0})
    assert n.failed and not n.initialized


def test_frozen_and_comparable() -> None:
    a = Negotiated(minor=31)
    assert a == Negotiated(minor=31) and hash(a) == hash(Negotiated(minor=31))
