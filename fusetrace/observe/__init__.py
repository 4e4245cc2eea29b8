"""Looking at a trace rather than reading it: the numbers behind ``fusetrace top`` and
``fusetrace report``, and frames as table rows (Parquet).

:mod:`fusetrace.observe.aggregate` is pure: it is fed frame headers (from a capture, from the
recorder, or from the kernel's fuse tracepoints) and keeps per-opcode counts, requests in
flight, latency histograms, errors by errno, bytes and time buckets, in memory that does not
grow with the trace.
"""
