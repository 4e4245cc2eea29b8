"""``fusetrace conform``: a built-in workload, and the conformance report made from its capture.

* ``steps``: the step catalogue as data (name, opcodes, writes), pure.
* ``workload``: the system calls of each step; ``runner``: ``run_workload(dir)``, usable
  against any directory, each step bounded by a timeout.
* ``coverage``: which opcodes the kernel sent, and why the others could not be sent on this
  kind of mount or connection (the facts live in protocol/registry.py), pure.
* ``report``: per-step verdicts merged with what the capture shows, the coverage, and the
  text, JSON and JUnit forms of the report, pure.
* ``session``: one run: mount through ``fusetrace record``, run, unmount, judge.
"""
