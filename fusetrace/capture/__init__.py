"""Capture files: pcapng in and out, raw frames only (design.md §4). Never decodes."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fusetrace.capture.pcapng import (
        LINKTYPE_FUSE,
        CaptureInfo,
        CaptureReader,
        CaptureWriter,
        Channel,
    )

__all__ = ["LINKTYPE_FUSE", "CaptureInfo", "CaptureReader", "CaptureWriter", "Channel"]


def __getattr__(name: str) -> Any:
    """The names above, from pcapng.py on first use: a recorder creates its capture file
    (files.py) before the daemon starts, and loads the writer while it starts."""
    if name in __all__:
        from fusetrace.capture import pcapng

        return getattr(pcapng, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
