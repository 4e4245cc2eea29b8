"""The negotiated session: what the INIT pair settled (protocol.md §4).

:class:`Negotiated` is frozen. Decoding a body needs it (compat sizes depend on the minor,
the setxattr_in size on SETXATTR_EXT); :class:`fusetrace.protocol.stream.FrameDecoder`
builds it from the INIT request and reply as it meets them. Before INIT is seen,
:meth:`Negotiated.default` stands in (minor 45, no flags).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from fusetrace.protocol.abi import (
    FUSE_KERNEL_MINOR_VERSION,
    FUSE_KERNEL_VERSION,
    FUSE_MIN_MAX_WRITE,
    InitFlag,
)


@dataclass(frozen=True)
class Negotiated:
    """What both sides agreed on in INIT, as the kernel stores it.

    ``minor`` is the reply's minor as-is (``fc->minor``); every kernel compat test is
    ``minor < N``, so that is what decides struct sizes. ``flags`` are the reply's flags
    (flags2 counted only with INIT_EXT, flags ignored entirely for reply minor < 6);
    ``offered`` the kernel's. ``initialized`` is True once a successful INIT reply was seen.
    """

    byte_order: str = "little"
    kernel_major: int = FUSE_KERNEL_VERSION
    kernel_minor: int = FUSE_KERNEL_MINOR_VERSION
    offered: InitFlag = InitFlag(0)  # noqa: RUF009 - immutable
    max_readahead: int = 0
    major: int = FUSE_KERNEL_VERSION
    minor: int = FUSE_KERNEL_MINOR_VERSION
    flags: InitFlag = InitFlag(0)  # noqa: RUF009 - immutable
    max_write: int = FUSE_MIN_MAX_WRITE
    max_pages: int = 0
    time_gran: int = 0
    max_background: int = 12
    congestion_threshold: int = 9
    map_alignment: int = 0
    max_stack_depth: int = 0
    request_timeout: int = 0
    initialized: bool = False
    #: the INIT reply was an error or had a major other than 7: the connection is unusable
    failed: bool = False
    #: '<' or '>' (derived); and a per-session cache the decoder keeps its layouts in
    _order: str = field(init=False, repr=False, compare=False)
    _cache: dict[Any, Any] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_order", "<" if self.byte_order in ("little", "<") else ">")
        object.__setattr__(self, "_cache", {})

    @classmethod
    def default(cls, byte_order: str = "little") -> Negotiated:
        """The stand-in before INIT: newest minor, nothing accepted."""
        return cls(byte_order=byte_order)

    @property
    def order(self) -> str:
        """'<' or '>' for struct formats."""
        return self._order

    def accepted(self, flag: InitFlag) -> bool:
        return bool(self.flags & flag)

    def with_init_request(self, init_in: Mapping[str, Any]) -> Negotiated:
        """Record the kernel's side of INIT (a decoded fuse_init_in body)."""
        offered = InitFlag.from_words(init_in.get("flags", 0), init_in.get("flags2", 0))
        if not offered & InitFlag.INIT_EXT:
            offered = InitFlag.from_words(init_in.get("flags", 0))
        return replace(
            self,
            kernel_major=init_in.get("major", FUSE_KERNEL_VERSION),
            kernel_minor=init_in.get("minor", FUSE_KERNEL_MINOR_VERSION),
            offered=offered,
            max_readahead=init_in.get("max_readahead", 0),
        )

    def with_init_reply(self, init_out: Mapping[str, Any], error: int = 0) -> Negotiated:
        """Record the daemon's INIT reply (a decoded fuse_init_out body; missing = 0)."""
        if error:
            return replace(self, failed=True, initialized=False)
        major = init_out.get("major", 0)
        minor = init_out.get("minor", 0)
        flags = InitFlag(0)
        if minor >= 6:
            flags = InitFlag.from_words(init_out.get("flags", 0))
            if flags & InitFlag.INIT_EXT:
                flags = InitFlag.from_words(init_out.get("flags", 0), init_out.get("flags2", 0))
        max_write = FUSE_MIN_MAX_WRITE
        if minor >= 5:
            max_write = max(init_out.get("max_write", 0), FUSE_MIN_MAX_WRITE)
        max_background, congestion = self.max_background, self.congestion_threshold
        if minor >= 13:
            max_background = init_out.get("max_background", 0) or max_background
            congestion = init_out.get("congestion_threshold", 0) or congestion
        max_pages = 0
        if flags & InitFlag.MAX_PAGES:
            max_pages = max(init_out.get("max_pages", 0), 1)
        return replace(
            self,
            major=major,
            minor=minor,
            flags=flags,
            max_write=max_write,
            max_pages=max_pages,
            time_gran=init_out.get("time_gran", 0),
            max_background=max_background,
            congestion_threshold=congestion,
            map_alignment=init_out.get("map_alignment", 0),
            max_stack_depth=init_out.get("max_stack_depth", 0),
            request_timeout=(
                init_out.get("request_timeout", 0) if flags & InitFlag.REQUEST_TIMEOUT else 0
            ),
            initialized=major == FUSE_KERNEL_VERSION,
            failed=major != FUSE_KERNEL_VERSION,
        )
