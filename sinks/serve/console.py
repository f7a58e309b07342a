"""The web console `rillet serve` shows at `/`: every view's versions, lag, freshness against its
target, dead letters (counts by reason and the latest records), the latest skew report, charts of
events/s and lag over the last hour, and a lookup of one entity's features now and as of a time.

Plain server-rendered HTML with inline SVG charts: no script, no asset from elsewhere, so it
loads fast and works with no internet access. `/console.json` returns the same figures for
machines (and for the browser test, which checks the page against it).

The figures come from where rillet keeps them: `sinks.observe.status` (versions, workers, lag,
freshness, dead letters of the last hour), the workers' history of progress in Redis (the
charts), the dead-letter topic's tail, and the report `rillet skew` saves.
"""

from __future__ import annotations

import html
import json
import time
from itertools import pairwise
from typing import Any

from sinks.online.keys import history_key, skew_key
from streams.definitions.view import FeatureView
from streams.settings import Settings
from streams.timeutil import duration_label, format_ms

__all__ = ["Console"]

HOUR_MS = 3_600_000
HISTORY_STEP_MS = 10_000  # as often as a worker adds a point (streams.worker.app.HISTORY_EVERY_MS)


class Console:
    """Gathers each view's figures and renders them."""

    def __init__(self, settings: Settings, views: list[FeatureView], client: Any) -> None:
        self.settings, self.views, self.redis = settings, {v.name: v for v in views}, client

    # ------------------------------------------------------------------ figures
    def figures(self) -> dict[str, Any]:
        """Everything the page shows, as plain data (blocking: run it off the event loop)."""
        from dataclasses import asdict

        from sinks.observe.status import topic_heads, version_lag, view_status
        from sinks.online.versions import VersionRegistry
        from streams.broker.dead_letters import latest_dead_letters

        registry = VersionRegistry(self.redis)
        now_ms = int(time.time() * 1000)
        out: dict[str, Any] = {"generated_ms": now_ms, "views": []}
        for view in self.views.values():
            heads = topic_heads(self.settings, view.topic)
            versions = registry.list(view.name)
            active = next((v for v in versions if v.state == "active"), None)
            lag = version_lag(self.settings, registry, view, active, heads) if active else None
            status = view_status(self.settings, view, registry, heads, lag, now_ms)
            skew = self.redis.get(skew_key(view.name))
            out["views"].append({
                "status": {**asdict(status), "late_1h": status.late_1h},
                "versions": [{"version": v.version, "state": v.state, "events": v.events,
                              "created_ms": v.created_ms, "switched_ms": v.switched_ms,
                              "kept_until_ms": v.kept_until_ms,
                              "lag": lag if v is active else version_lag(self.settings, registry, view, v, heads)}
                             for v in versions],
                "latest_dead_letters": latest_dead_letters(self.settings, view.dlq_topic, 5),
                "skew": json.loads(skew) if skew else None,
                "history": self.history(view, active.version, now_ms) if active else [],
            })
        return out

    def history(self, view: FeatureView, version: int, now_ms: int) -> list[dict[str, Any]]:
        """Per 10 s of the last hour (the workers' report interval): events aggregated per second and records
        of lag, over all partitions."""
        step = HISTORY_STEP_MS
        entries = self.redis.xrange(history_key(view.name, version), min=str(now_ms - HOUR_MS - step))
        latest: dict[int, dict[str, tuple[int, int]]] = {}  # step -> partition -> (aggregated, lag)
        for _id, fields in entries:
            per_step = latest.setdefault(int(fields[b"at_ms"]) // step, {})
            for partition, (count, lag) in json.loads(fields[b"partitions"]).items():
                per_step[partition] = (count, lag)
        points, carried = [], {}
        for bucket in sorted(latest):
            carried.update(latest[bucket])  # a partition not reported in this step keeps its last figures
            points.append({"at_ms": bucket * step, "aggregated": sum(c for c, _ in carried.values()),
                           "lag": sum(lag for _, lag in carried.values())})
        for before, point in pairwise(points):
            seconds = (point["at_ms"] - before["at_ms"]) / 1000
            point["events_per_s"] = round(max(point["aggregated"] - before["aggregated"], 0) / seconds, 2)
        return [p for p in points[1:] if p["at_ms"] >= now_ms - HOUR_MS]

    # ------------------------------------------------------------------- render
    def render(self, figures: dict[str, Any], lookup: dict[str, Any] | None = None) -> str:
        views = "".join(self._view(v, figures["generated_ms"]) for v in figures["views"])
        return _PAGE.format(views=views, lookup=self._lookup(lookup), generated=_time(figures["generated_ms"]),
                            options="".join(f'<option{" selected" if lookup and lookup.get("view") == n else ""}>'
                                            f"{_e(n)}</option>" for n in self.views),
                            entity=_e((lookup or {}).get("entity", "")), as_of=_e((lookup or {}).get("as_of", "")))

    def _view(self, figures: dict[str, Any], now_ms: int) -> str:
        s = figures["status"]
        name = _e(s["view"])
        versions = "".join(
            f"<tr><td>v{v['version']}</td><td>{_e(v['state'])}</td><td>{v['events']:,}</td>"
            f"<td>{'-' if v.get('lag') is None else format(v['lag'], ',')}</td>"
            f"<td>{_time(v['created_ms'])}</td><td>{_time(v['switched_ms'])}</td>"
            f"<td>{_time(v.get('kept_until_ms'))}</td></tr>" for v in figures["versions"])
        dlq_counts = ", ".join(f"{_e(k)} <b>{v:,}</b>" for k, v in sorted(s["dead_letters_1h"].items())) or "none"
        letters = "".join(
            f"<tr><td>{_e(d['reason'])}</td><td>{_e(d['source'])}</td><td>{_time(d['timestamp_ms'])}</td>"
            f"<td class=err>{_e(d['error'])}</td></tr>" for d in figures["latest_dead_letters"]) \
            or "<tr><td colspan=4>no dead letters</td></tr>"
        history = figures["history"]
        verdict_class = "ok" if s["verdict"] == "ok" else ("none" if s["verdict"] == "-" else "bad")
        fresh = "-" if s["freshness_s"] is None else f"{s['freshness_s']:.1f} s"
        target = "-" if s["freshness_target_s"] is None else duration_label(round(s["freshness_target_s"] * 1000))
        return f"""
<section class=view id="view-{name}" data-view="{name}">
  <h2>{name} <span class="verdict {verdict_class}" data-field=verdict>{_e(s['verdict'])}</span></h2>
  <dl>
    <dt>version</dt><dd data-field=version>{'-' if s['version'] is None else 'v' + str(s['version'])}</dd>
    <dt>workers</dt><dd><span data-field=workers>{s['workers']}</span>
      ({s['partitions_reported']}/{s['partitions']} partitions)</dd>
    <dt>lag</dt><dd data-field=lag>{'-' if s['lag'] is None else f"{s['lag']:,}"}</dd>
    <dt>freshness</dt><dd><span data-field=freshness>{fresh}</span>
      (target <span data-field=target>{target}</span>)</dd>
    <dt>dead letters, last hour</dt><dd data-field=dead_letters>{dlq_counts}</dd>
    <dt>late, last hour</dt><dd data-field=late>{s['late_1h']:,}</dd>
  </dl>
  <div class=charts>
    <figure><figcaption>events/s, last hour</figcaption>{_chart(history, "events_per_s", now_ms)}</figure>
    <figure><figcaption>lag (records), last hour</figcaption>{_chart(history, "lag", now_ms)}</figure>
  </div>
  <h3>versions</h3>
  <table><tr><th>version</th><th>role</th><th>events</th><th>lag</th><th>created</th><th>switched</th>
  <th>kept until</th></tr>{versions}</table>
  <h3>latest dead letters</h3>
  <table><tr><th>reason</th><th>source</th><th>at</th><th>error</th></tr>{letters}</table>
  <h3>skew (latest <code>rillet skew</code>)</h3>
  {_skew(figures["skew"])}
</section>"""

    def _lookup(self, lookup: dict[str, Any] | None) -> str:
        if not lookup:
            return ""
        if "error" in lookup:
            return f"<p class=bad id=lookup-error>{_e(lookup['error'])}</p>"
        rows = "".join(f"<tr><td>{_e(name)}</td><td data-now>{_e(_show(now))}</td><td data-as-of>"
                       f"{_e(_show(then))}</td></tr>" for name, now, then in lookup["rows"])
        return (f"<table id=lookup-result><tr><th>feature</th><th>now</th><th>as of {_e(lookup.get('as_of') or '-')}"
                f"</th></tr>{rows}</table>")


def _skew(report: dict[str, Any] | None) -> str:
    if not report:
        return "<p>no report yet: run <code>rillet skew --view V</code></p>"
    rows = "".join(f"<tr><td>{_e(f['feature'])}</td><td>{f['compared']:,}</td><td>{f['mismatches']:,}</td>"
                   f"<td>{f['missing']:,}</td><td>{f['extra']:,}</td><td>{f['largest_error']:g}</td></tr>"
                   for f in report["features"])
    examples = "".join(
        f"<tr><td>{_e(f['feature'])}</td><td data-entity>{_e(x['entity'])}</td><td>{_time(x['read_ms'])}</td>"
        f"<td>{_e(x['kind'])}</td><td>{_e(_show(x['online']))}</td><td>{_e(_show(x['offline']))}</td></tr>"
        for f in report["features"] for x in f.get("examples", []))
    examples = (f"<h4>examples</h4><table id=skew-examples><tr><th>feature</th><th>entity</th><th>read at</th>"
                f"<th>kind</th><th>served</th><th>training data</th></tr>{examples}</table>" if examples else "")
    return (f"<p data-field=skew>{report['reads']:,} reads, {report['compared']:,} values compared, "
            f"<b>{report['bad']:,}</b> differ ({report['mismatch_rate']:.4%})</p><table><tr><th>feature</th>"
            f"<th>compared</th><th>mismatches</th><th>missing</th><th>extra</th><th>largest error</th></tr>"
            f"{rows}</table>{examples}")


def _chart(points: list[dict[str, Any]], field: str, now_ms: int, width: int = 360, height: int = 90) -> str:
    """An inline SVG line chart of one figure over the last hour on a time axis: x is the point's time, and
    where the workers reported nothing for longer than two report intervals the line breaks (an outage
    shows as a gap, not as a straight line across it)."""
    if not points:
        return f'<svg width={width} height={height} class=chart><text x=8 y=48>no history yet</text></svg>'
    top = max(max(p.get(field, 0) or 0 for p in points), 1)
    start = now_ms - HOUR_MS

    def xy(point: dict[str, Any]) -> str:
        x = (point["at_ms"] - start) / HOUR_MS * width
        return f"{x:.1f},{height - 14 - ((point.get(field, 0) or 0) / top) * (height - 24):.1f}"

    runs: list[list[dict[str, Any]]] = [[points[0]]]
    for before, point in pairwise(points):
        if point["at_ms"] - before["at_ms"] > 2 * HISTORY_STEP_MS:
            runs.append([])
        runs[-1].append(point)
    lines = "".join(f'<polyline points="{" ".join(xy(p) for p in run)}"/>' if len(run) > 1
                    else f'<circle r=1.5 cx={xy(run[0]).split(",")[0]} cy={xy(run[0]).split(",")[1]} />'
                    for run in runs)
    return (f'<svg width={width} height={height} class=chart data-max="{top:g}" data-gaps={len(runs) - 1}>{lines}'
            f'<text x=4 y=10>max {top:,.1f}</text><text x=4 y={height - 2}>-60 min</text>'
            f'<text x={width / 2 - 14:.0f} y={height - 2}>-30 min</text>'
            f'<text x={width - 28} y={height - 2}>now</text></svg>')


def _show(value: Any) -> str:
    return "null" if value is None else json.dumps(value) if not isinstance(value, str) else value


def _time(ms: int | None) -> str:
    return format_ms(ms) or "-"  # ISO-8601, as every other path prints a time


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


_PAGE = """<!doctype html>
<html lang=en><head><meta charset=utf-8><title>rillet</title>
<meta name=viewport content="width=device-width, initial-scale=1">
<style>
body{{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222;max-width:1100px}}
h1{{margin:0 0 .2em}} h2{{margin:.2em 0}} h3{{margin:1em 0 .3em;font-size:1em}}
section.view{{border:1px solid #ddd;border-radius:6px;padding:1em;margin:1em 0}}
dl{{display:grid;grid-template-columns:max-content 1fr;gap:.2em 1em;margin:.5em 0}} dt{{color:#666}}
table{{border-collapse:collapse}} td,th{{border-bottom:1px solid #eee;padding:.2em .6em;text-align:left}}
.verdict{{font-size:.7em;padding:.1em .5em;border-radius:4px;vertical-align:middle}}
.ok{{background:#d8f5d8}} .bad{{background:#fbd5d5}} .none{{background:#eee}}
.charts{{display:flex;gap:1.5em;flex-wrap:wrap}} figure{{margin:0}} figcaption{{color:#666}}
svg.chart{{background:#fafafa;border:1px solid #eee}} svg.chart polyline{{fill:none;stroke:#2a6fdb;stroke-width:1.5}}
svg.chart text{{font-size:10px;fill:#888}} svg.chart circle{{fill:#2a6fdb}}
td.err{{color:#a33;max-width:420px;overflow-wrap:anywhere}}
form{{display:flex;gap:.5em;align-items:center;flex-wrap:wrap}}
</style></head>
<body>
<h1>rillet</h1><p>as of {generated} &middot; <a href="/console.json">console.json</a> &middot;
<a href="/metrics">metrics</a></p>
<section id=lookup><h2>lookup</h2>
<form method=get action="/">
<label>view <select name=view>{options}</select></label>
<label>entity <input name=entity value="{entity}" required></label>
<label>as of <input name=as_of value="{as_of}" placeholder="2026-01-01T00:00:00Z or epoch ms"></label>
<button type=submit>look up</button>
</form>
{lookup}
</section>
{views}
</body></html>
"""
