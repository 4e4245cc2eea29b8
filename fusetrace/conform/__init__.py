"""``fusetrace conform``: a built-in workload, and the conformance report made from its capture.

* ``workload``: the steps (data: name, opcodes expected, function) and ``run_workload(dir)``,
  usable against any directory.
* ``report``: per-step verdicts merged with what the capture shows, and the text, JSON and
  JUnit forms of the report.
"""
