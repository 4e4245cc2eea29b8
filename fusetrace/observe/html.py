"""``fusetrace report``: one self-contained HTML page of plots over an :class:`Aggregate`.

The page carries plotly.js inline (no network fetch when it is opened) and plots only
aggregated data: latency histogram buckets, time buckets, error counts. A capture of a
million frames makes the same few thousand points as one of a thousand, so the browser
never sees one point per frame.

Pure: builds a string; the command writes it.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from fusetrace.observe.aggregate import Aggregate
from fusetrace.protocol.abi import InitFlag, errno_name, flag_names
from fusetrace.report.units import latency
from fusetrace.tracker import RULES, Finding

#: opcodes drawn one by one; the rest are summed as "other"
TOP_OPCODES = 8
#: findings listed one per row (the rest are counted per rule)
MAX_FINDINGS = 2000


@dataclass
class ReportInput:
    """Everything the page shows besides the aggregate."""

    title: str
    capture: str
    meta: dict[str, Any] = field(default_factory=dict)
    findings: Sequence[Finding] | None = None
    truncated: bool = False
    generator: str = "fusetrace"


def _esc(v: object) -> str:
    return html.escape(str(v), quote=True)


def _latency(ns: int | None) -> str:
    return latency(ns, sep=" ", micro="µs")


def _errno(e: int) -> str:
    return errno_name(e)


def _busiest(agg: Aggregate, *, answered: bool) -> list[str]:
    names = [s.name for s in agg.ordered() if not answered or s.latency.count]
    return names[:TOP_OPCODES]


def latency_figure(agg: Aggregate) -> Any:
    import plotly.graph_objects as go

    fig = go.Figure()
    for name in _busiest(agg, answered=True):
        h = agg.ops[name].latency
        xs, ys = [], []
        for lo, hi, n in h.items():
            xs.append((lo + hi) / 2 / 1000)
            # buckets double in width every octave: scale each count to a bucket of
            # 1/16 octave, so the curve's shape does not jump at powers of two
            span = math.log((hi + 1) / lo) if lo else _SIXTEENTH
            ys.append(round(n * _SIXTEENTH / span, 3))
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", name=name,
                                 line={"shape": "hvh"}))  # fmt: skip
    fig.update_layout(
        title="Latency distribution per opcode (request to reply)",
        xaxis={"title": "latency (µs, log scale)", "type": "log"},
        yaxis={"title": "replies per 1/16 octave"},
    )
    return fig


_SIXTEENTH = math.log(2) / 16


def in_flight_figure(agg: Aggregate) -> Any:
    import plotly.graph_objects as go

    tl = agg.timeline
    fig = go.Figure()
    fig.add_trace(
        go.Scatter(
            x=tl.times(),
            y=tl.in_flight,
            mode="lines",
            name="in flight (peak)",
            line={"shape": "hv"},
            fill="tozeroy",
        )
    )
    neg = agg.connection.negotiated
    if neg is not None and tl.length:
        fig.add_trace(
            go.Scatter(
                x=[0, tl.times()[-1] + tl.width / 1e9],
                y=[neg.max_background, neg.max_background],
                mode="lines",
                name=f"max_background ({neg.max_background})",
                line={"dash": "dash"},
            )
        )
    fig.update_layout(
        title=f"Requests in flight (most at once per {tl.width / 1e6:g} ms)",
        xaxis={"title": "seconds since the first frame"},
        yaxis={"title": "requests in flight"},
    )
    return fig


def throughput_figure(agg: Aggregate) -> Any:
    import plotly.graph_objects as go

    tl = agg.timeline
    secs = tl.width / 1e9
    xs = tl.times()
    fig = go.Figure()
    shown = _busiest(agg, answered=False)
    other = [0] * tl.length
    for name, series in tl.requests.items():
        if name not in shown:
            for i, n in enumerate(series):
                other[i] += n
    for name in shown:
        series = tl.requests.get(name, [])
        fig.add_trace(go.Scatter(x=xs, y=[n / secs for n in series], mode="lines", name=name,
                                 stackgroup="ops", line={"shape": "hv", "width": 0.5}))  # fmt: skip
    if any(other):
        fig.add_trace(go.Scatter(x=xs, y=[n / secs for n in other], mode="lines", name="other",
                                 stackgroup="ops", line={"shape": "hv", "width": 0.5}))  # fmt: skip
    fig.update_layout(
        title=f"Throughput by opcode (requests per second, {tl.width / 1e6:g} ms buckets)",
        xaxis={"title": "seconds since the first frame"},
        yaxis={"title": "requests/s"},
    )
    return fig


def errors_figure(agg: Aggregate) -> Any | None:
    import plotly.graph_objects as go

    by_errno = agg.errors_by_errno()
    if not by_errno:
        return None
    labels = [f"{_errno(e)} ({e})" for e in by_errno]
    fig = go.Figure()
    for st in agg.ordered():
        if not st.errors:
            continue
        fig.add_trace(go.Bar(x=labels, y=[st.errors.get(e, 0) for e in by_errno], name=st.name))
    fig.update_layout(
        title="Failed replies by errno and opcode",
        barmode="stack",
        xaxis={"title": "errno"},
        yaxis={"title": "replies"},
    )
    return fig


def _summary_table(agg: Aggregate) -> str:
    head = ("opcode", "requests", "replies", "in flight at end", "p50", "p99", "max", "errors",
            "bytes in", "bytes out")  # fmt: skip
    rows = []
    for st in agg.ordered():
        h = st.latency
        errs = ", ".join(f"{_errno(e)} {n}" for e, n in sorted(st.errors.items()))
        cells = (st.name, st.requests, st.replies, st.in_flight, _latency(h.percentile(0.5)),
                 _latency(h.percentile(0.99)), _latency(h.max), errs, st.bytes_in,
                 st.bytes_out)  # fmt: skip
        rows.append("<tr>" + "".join(f"<td>{_esc(c)}</td>" for c in cells) + "</tr>")
    return (
        "<table class='ops'><thead><tr>"
        + "".join(f"<th>{h}</th>" for h in head)
        + "</tr></thead><tbody>"
        + "".join(rows)
        + "</tbody></table>"
    )


def _findings(findings: Sequence[Finding]) -> str:
    if not findings:
        return "<p>The checker found nothing.</p>"
    counts: dict[str, int] = {}
    for f in findings:
        counts[f.rule] = counts.get(f.rule, 0) + 1
    parts = ["<table class='findings'><thead><tr><th>frame</th><th>rule</th><th>severity</th>"
             "<th>at fault</th><th>opcode</th><th>unique</th><th>message</th></tr></thead>"
             "<tbody>"]  # fmt: skip
    for f in findings[:MAX_FINDINGS]:
        frame = "end" if f.frame is None else str(f.frame + 1)
        unique = "" if f.unique is None else str(f.unique)
        parts.append(
            f"<tr class='{_esc(f.severity.label)}'><td>{frame}</td><td><a href='#rule-{f.rule}'>"
            f"{_esc(f.rule)}</a></td><td>{_esc(f.severity.label)}</td>"
            f"<td>{_esc(f.culprit.value)}</td><td>{_esc(f.opcode or '')}</td><td>{unique}</td>"
            f"<td>{_esc(f.message)}</td></tr>"
        )
    parts.append("</tbody></table>")
    if len(findings) > MAX_FINDINGS:
        parts.append(f"<p>… and {len(findings) - MAX_FINDINGS} more findings.</p>")
    parts.append("<h3>What the rules mean</h3>")
    for code in sorted(counts):
        rule = RULES.get(code)
        if rule is None:
            continue
        parts.append(
            f"<div class='rule' id='rule-{_esc(code)}'><h4>{_esc(code)} {_esc(rule.name)}: "
            f"{_esc(rule.title)} ({counts[code]} found)</h4><p>severity: "
            f"{_esc(rule.severity.label)}; at fault: {_esc(rule.culprit.value)}</p>"
            f"<p>{_esc(rule.doc)}</p></div>"
        )
    return "".join(parts)


_STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
h1 { font-size: 1.4em; } h2 { font-size: 1.15em; margin-top: 1.6em; }
table { border-collapse: collapse; font-size: 0.85em; }
td, th { border: 1px solid #ccc; padding: 2px 6px; text-align: right; }
td:first-child, th:first-child { text-align: left; }
table.findings td { text-align: left; vertical-align: top; }
tr.error td { background: #fde8e8; } tr.warning td { background: #fff6dd; }
dl.meta { display: grid; grid-template-columns: max-content auto; gap: 2px 1em; }
dl.meta dt { font-weight: bold; } dl.meta dd { margin: 0; word-break: break-all; }
.plot { width: 100%; max-width: 1200px; height: 420px; }
.rule p { max-width: 60em; }
"""


def render(agg: Aggregate, info: ReportInput) -> str:
    """The whole page."""
    figures = [
        ("latency", latency_figure(agg)),
        ("in-flight", in_flight_figure(agg)),
        ("throughput", throughput_figure(agg)),
    ]
    errs = errors_figure(agg)
    if errs is not None:
        figures.append(("errors", errs))
    config = {"displaylogo": False, "responsive": True}
    divs = []
    for i, (name, fig) in enumerate(figures):
        fig.update_layout(margin={"l": 60, "r": 20, "t": 50, "b": 50}, template="plotly_white")
        divs.append(
            f"<section id='{name}'>"
            + fig.to_html(
                full_html=False,
                include_plotlyjs=i == 0,
                config=config,
                div_id=f"plot-{name}",
                default_height="420px",
            )
            + "</section>"
        )
    meta = info.meta
    neg = agg.connection.negotiated
    items: list[tuple[str, str]] = [("capture", info.capture)]
    daemon = meta.get("daemon")
    if isinstance(daemon, list):
        items.append(("daemon", " ".join(map(str, daemon))))
    if meta.get("source"):
        items.append(("source", str(meta["source"])))
    for key in ("mountpoint", "mount_type", "kernel_release"):
        if meta.get(key):
            items.append((key.replace("_", " "), str(meta[key])))
    items.append(("frames", f"{agg.frames:,}"))
    items.append(("duration", f"{agg.duration_ns / 1e9:.3f} s"))
    items.append(("bytes", f"{agg.bytes:,}"))
    items.append(("most requests in flight", str(agg.max_in_flight)))
    if neg is not None:
        items.append(("FUSE version", f"{neg.major}.{neg.minor}"))
        items.append(("negotiated flags", " ".join(flag_names(int(neg.flags), InitFlag))))
        items.append(("max_background", str(neg.max_background)))
        items.append(("congestion_threshold", str(neg.congestion_threshold)))
        items.append(("max_write", str(neg.max_write)))
    if info.truncated:
        items.append(("warning", "the capture is cut short; its last block was incomplete"))
    meta_html = "".join(f"<dt>{_esc(k)}</dt><dd>{_esc(v)}</dd>" for k, v in items)
    errors_html = "" if errs is not None else "<p>No reply failed: nothing to plot.</p>"
    findings_html = (
        "<p>Not checked (--no-check).</p>" if info.findings is None else _findings(info.findings)
    )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="generator" content="{_esc(info.generator)}">
<title>{_esc(info.title)}</title><style>{_STYLE}</style></head>
<body>
<h1>{_esc(info.title)}</h1>
<dl class="meta">{meta_html}</dl>
<h2>Plots</h2>
{"".join(divs)}
{errors_html}
<h2>Opcodes</h2>
{_summary_table(agg)}
<h2>Checker findings</h2>
{findings_html}
</body></html>
"""
