"""fusetrace: record, decode, check and replay the Linux FUSE protocol."""

__version__ = "0.1.0.dev0"
