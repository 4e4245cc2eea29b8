"""Capture files: pcapng in and out, raw frames only (design.md §4). Never decodes."""

from fusetrace.capture.pcapng import (
    LINKTYPE_FUSE,
    CaptureInfo,
    CaptureReader,
    CaptureWriter,
    Channel,
)

__all__ = ["LINKTYPE_FUSE", "CaptureInfo", "CaptureReader", "CaptureWriter", "Channel"]
