"""The report: capture split into steps by the marker LOOKUPs, verdicts, JUnit and JSON."""

from __future__ import annotations

import errno
import json
from xml.etree import ElementTree as ET

from fusetrace.conform.report import analyze_capture, build_report, judge, render_junit, render_text
from fusetrace.conform.steps import Status, StepResult, marker_name
from fusetrace.frame import Direction, Frame
from fusetrace.protocol.abi import Opcode
from fusetrace.protocol.encode import encode_reply, encode_request
from fusetrace.tracker import Culprit, Finding, Severity

INIT_IN = {"major": 7, "minor": 45, "max_readahead": 65536, "flags": 0}
INIT_OUT = {"major": 7, "minor": 45, "max_write": 65536, "max_readahead": 65536}


class Session:
    """Builds a list of records: requests and their replies."""

    def __init__(self) -> None:
        self.records: list[Frame] = []
        self.unique = 2
        self.call(Opcode.INIT, INIT_IN, body=INIT_OUT)

    def add(self, direction: Direction, data: bytes) -> None:
        i = len(self.records)
        self.records.append(Frame(i, i * 1000, direction, data, len(data)))

    def call(self, op: int, req: dict | None = None, *, error: int = 0, body=None, node=1) -> None:  # type: ignore[no-untyped-def]
        u = self.unique
        self.unique += 2
        self.add(Direction.INBOUND, encode_request(op, req, unique=u, nodeid=node))
        self.add(Direction.OUTBOUND, encode_reply(op, body, unique=u, error=error))

    def marker(self, index: int, step: str) -> None:
        self.call(Opcode.LOOKUP, {"name": marker_name(index, step)}, error=-errno.ENOENT)


def test_frames_are_split_into_steps_by_the_markers() -> None:
    s = Session()
    s.marker(0, "statfs")
    s.call(Opcode.STATFS, body={"st": {}})
    s.marker(1, "lseek-data-hole")
    s.call(Opcode.LSEEK, {"fh": 1, "offset": 0, "whence": 3}, error=-errno.ENOSYS, node=5)
    s.call(Opcode.LOOKUP, {"name": "x"}, error=-errno.ENOENT)
    a = analyze_capture(s.records)
    assert a.steps_seen == ["statfs", "lseek-data-hole"]
    assert set(a.ops("statfs")) == {"STATFS"}  # the marker itself is not counted
    assert a.ops("statfs")["STATFS"].ok == 1
    lseek = a.ops("lseek-data-hole")
    assert lseek["LSEEK"].errors == {"ENOSYS": 1} and lseek["LSEEK"].ok == 0
    assert lseek["LOOKUP"].errors == {"ENOENT": 1}
    assert a.ops("(mount)")["INIT"].ok == 1
    summary = a.summary()
    assert summary["opcodes"] == {"INIT": 1, "LOOKUP": 1, "LSEEK": 1, "STATFS": 1}
    assert summary["errors"] == {"LOOKUP ENOENT": 1, "LSEEK ENOSYS": 1}


def result(name: str, ops: tuple[str, ...], status: Status, err: int | None = None) -> StepResult:
    return StepResult(0, name, tuple(Opcode[o] for o in ops), status, err, "")


def stats(op: str, ok: int = 0, **errors: int):  # type: ignore[no-untyped-def]
    s = Session()
    s.marker(0, "x")
    op_code = Opcode[op]
    for _ in range(ok):
        s.call(op_code, body=None) if op_code != Opcode.LSEEK else s.call(
            op_code, {"fh": 1, "offset": 0, "whence": 3}, body={"offset": 0}
        )
    for name, n in errors.items():
        for _ in range(n):
            s.call(op_code, {"fh": 1, "offset": 0, "whence": 3}, error=-getattr(errno, name))
    return analyze_capture(s.records).ops("x")


def test_a_refused_op_makes_the_step_unsupported_even_if_the_syscall_worked() -> None:
    seen = stats("LSEEK", ENOSYS=1)
    status, detail = judge(result("lseek-data-hole", ("LSEEK",), Status.SUPPORTED), seen)
    assert status is Status.UNSUPPORTED
    assert "daemon answered LSEEK ENOSYS; the kernel emulated the call" in detail


def test_a_refusal_followed_by_a_success_is_supported() -> None:
    seen = stats("LSEEK", ok=1, ENOSYS=1)
    status, _ = judge(result("lseek-data-hole", ("LSEEK",), Status.SUPPORTED), seen)
    assert status is Status.SUPPORTED


def test_link_enosys_reported_as_eperm_is_unsupported_not_failed() -> None:
    seen = stats("LSEEK", ENOSYS=1)  # any op refused: what matters is the step's own op
    seen = {"LINK": seen["LSEEK"]}
    status, _ = judge(result("link", ("LINK",), Status.FAILED, errno.EPERM), seen)
    assert status is Status.UNSUPPORTED


def test_rename2_einval_counts_as_unsupported_for_the_rename_steps_only() -> None:
    seen = {"RENAME2": stats("LSEEK", EINVAL=1)["LSEEK"]}
    st, _ = judge(result("rename-exchange", ("RENAME2",), Status.UNSUPPORTED, 22), seen)
    assert st is Status.UNSUPPORTED
    other = {"LSEEK": stats("LSEEK", EINVAL=1)["LSEEK"]}
    st, detail = judge(result("lseek-data-hole", ("LSEEK",), Status.FAILED, 22), other)
    assert st is Status.FAILED and "daemon answered LSEEK EINVAL" in detail


def test_skipped_stays_skipped_and_no_request_is_noted() -> None:
    assert judge(result("write", ("WRITE",), Status.SKIPPED), {})[0] is Status.SKIPPED
    status, detail = judge(result("flock", ("SETLK",), Status.SUPPORTED), {})
    assert status is Status.SUPPORTED and "no request reached the daemon" in detail


def make_report(findings: list[Finding], failed: bool = False):  # type: ignore[no-untyped-def]
    results = [
        result("statfs", ("STATFS",), Status.SUPPORTED),
        result("write", ("WRITE",), Status.FAILED if failed else Status.SUPPORTED, errno.EIO),
        result("tmpfile", ("TMPFILE",), Status.UNSUPPORTED, errno.EOPNOTSUPP),
        result("chmod", ("SETATTR",), Status.SKIPPED),
    ]
    return build_report(results, None, findings, daemon=["d", "/m"], mountpoint="/m")


FT102 = Finding("FT102", Severity.ERROR, Culprit.DAEMON, 7, "second reply", 4, "LOOKUP")
FT213 = Finding("FT213", Severity.INFO, Culprit.CAPTURE, None, "lookups held")


def test_exit_verdict() -> None:
    assert make_report([FT213]).ok
    assert not make_report([FT102]).ok
    assert not make_report([], failed=True).ok


def test_junit_has_a_testcase_per_step_and_per_rule_family_naming_failures() -> None:
    root = ET.fromstring(render_junit(make_report([FT102, FT213], failed=True)))
    steps = root.find("testsuite[@name='conform.workload']")
    assert steps is not None and steps.get("tests") == "4" and steps.get("failures") == "1"
    cases = {c.get("name"): c for c in steps.iter("testcase")}
    assert cases["write"].find("failure") is not None
    assert "not supported" in cases["tmpfile"].find("skipped").get("message")
    assert "skipped" in cases["chmod"].find("skipped").get("message")
    fams = root.find("testsuite[@name='conform.findings']")
    fcases = {c.get("name")[:3]: c for c in fams.iter("testcase")}
    assert set(fcases) >= {"FT1", "FT2", "FT3", "FT4", "FT5"}
    failure = fcases["FT1"].find("failure")
    assert failure is not None and "FT102" in failure.get("message")
    assert "frame 8" in failure.text  # index 7, numbered from 1
    assert fcases["FT2"].find("failure") is None  # info only
    assert fams.get("failures") == "1"


def test_json_and_text() -> None:
    rep = make_report([FT102])
    doc = json.loads(json.dumps(rep.to_dict()))
    assert doc["ok"] is False
    assert doc["counts"] == {"supported": 2, "not supported": 1, "failed": 0, "skipped": 1}
    assert [s["status"] for s in doc["steps"]] == [
        "supported", "supported", "not supported", "skipped",
    ]  # fmt: skip
    assert doc["findings"][0]["rule"] == "FT102"
    text = render_text(rep)
    assert "FT102 error (daemon) frame 8 LOOKUP: second reply" in text
    assert text.rstrip().endswith("result: FAIL")


def test_baseline_differences_fail_the_run_and_are_listed() -> None:
    rep = make_report([])
    assert rep.ok
    rep.baseline = {
        "capture": "base.pcapng",
        "exit": 1,
        "differences": [
            {"frame": 100, "opcode": "READ", "unique": 102, "field": "data",
             "recorded": "131072 bytes", "live": "61440 bytes"},
        ],
    }  # fmt: skip
    assert not rep.ok
    text = render_text(rep)
    assert "baseline base.pcapng: 1 behaviour differences" in text
    assert "frame 100 READ data: recorded 131072 bytes, live 61440 bytes" in text
    root = ET.fromstring(render_junit(rep))
    suite = root.find("testsuite[@name='conform.baseline']")
    assert suite is not None and suite.get("failures") == "1"
    rep.baseline["differences"] = []
    assert rep.ok and "no behaviour differences" in render_text(rep)


def test_coverage_comes_from_the_capture_and_its_init_exchange() -> None:
    s = Session()  # INIT reply: minor 45, no flags granted
    s.marker(0, "statfs")
    s.call(Opcode.STATFS, body={"st": {}})
    s.marker(1, "copy-file-range")
    s.call(Opcode.COPY_FILE_RANGE_64, {"fh_in": 1, "len": 4}, error=-errno.ENOSYS, node=5)
    s.call(Opcode.COPY_FILE_RANGE, {"fh_in": 1, "len": 4}, body={"size": 4}, node=5)
    a = analyze_capture(s.records, meta={"mount_type": "fuse", "mount_options": []})
    facts = a.facts()
    assert facts.kernel_minor == 45 and facts.daemon_minor == 45
    assert facts.enosys == {Opcode.COPY_FILE_RANGE_64}
    results = [
        StepResult(0, "statfs", (Opcode.STATFS,), Status.SUPPORTED),
        StepResult(1, "copy-file-range", (Opcode.COPY_FILE_RANGE_64,), Status.SUPPORTED),
        StepResult(2, "fsyncdir", (Opcode.FSYNCDIR,), Status.SUPPORTED),
    ]
    rep = build_report(results, a, [], daemon=["d"], mountpoint="/m")
    by = {c.opcode: c for c in rep.coverage}
    assert by[Opcode.STATFS].status.value == "sent"
    assert by[Opcode.COPY_FILE_RANGE].status.value == "sent"
    assert by[Opcode.GETLK].reason == "the daemon does not grant POSIX_LOCKS"
    assert by[Opcode.FSYNCDIR].status.value == "not sent"
    assert by[Opcode.FSYNCDIR].reason == "asked for by fsyncdir (supported)"
    # JSON, text and JUnit all carry it
    doc = json.loads(json.dumps(rep.to_dict()))
    rows = {c["opcode"]: c for c in doc["coverage"]}
    assert rows["BMAP"] == {
        "opcode": "BMAP",
        "code": 37,
        "status": "not reachable",
        "requests": 0,
        "reason": "fuseblk only: FIBMAP on a block-device mount",
    }
    assert doc["coverage_counts"]["sent"] == 4  # INIT, STATFS and both copies
    text = render_text(rep)
    assert "opcodes: 4 sent, " in text
    assert "  not sent: FSYNCDIR (asked for by fsyncdir (supported))" in text
    assert "  not reachable: BMAP (fuseblk only: FIBMAP on a block-device mount)" in text
    root = ET.fromstring(render_junit(rep))
    suite = root.find("testsuite[@name='conform.coverage']")
    assert suite is not None and suite.get("tests") == str(len(rep.coverage))
    cases = {c.get("name"): c for c in suite.iter("testcase")}
    assert cases["STATFS"].find("skipped") is None
    skipped = cases["BMAP"].find("skipped")
    assert skipped is not None and skipped.get("message", "").startswith("not reachable: ")


def test_no_capture_no_coverage() -> None:
    rep = make_report([])
    assert rep.coverage == [] and rep.to_dict()["coverage"] == []
    assert "opcodes:" not in render_text(rep)
    assert ET.fromstring(render_junit(rep)).find("testsuite[@name='conform.coverage']") is None
