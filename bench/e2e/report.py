"""The end-to-end section's JSON, its targets (stated and judged, never asserted), the text
summary and the items/s-against-mailboxes plot (SVG written by hand: no plotting library)."""

from __future__ import annotations

import math
from typing import Any

#: Stated targets of the end-to-end section.
E2E_TARGETS: dict[str, float] = {
    "first_sync_graph_requests_per_item_max": 1.1,
    "ten_mailboxes_vs_one_rate_min": 8.0,
    "idle_graph_requests_per_mailbox_per_min_max": 2.0,
    "idle_dataverse_requests_per_table_per_min_max": 1.0,
}

_ARROW = {"crm_to_outlook": "CRM->Outlook", "outlook_to_crm": "Outlook->CRM"}


def _by_size(results: list[dict[str, Any]], workers: int = 1) -> dict[int, dict[str, Any]]:
    return {
        int(r["mailboxes"]): r
        for r in results
        if r.get("items_per_s") is not None and int(r.get("workers", 1)) == workers
    }


def _worker_counts(results: list[dict[str, Any]]) -> list[int]:
    return sorted({int(r.get("workers", 1)) for r in results})


def judge(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """One line per target and scenario it applies to: value, limit, met (None: not run)."""
    t = E2E_TARGETS
    out: list[dict[str, Any]] = []
    for r in doc.get("first_sync", []):
        per_item = (r.get("graph") or {}).get("per_item")
        out.append(
            {
                "target": "first sync Graph requests/item <=",
                "scope": f"{_ARROW['crm_to_outlook']} {r['mailboxes']}x{r['items_per_mailbox']}",
                "value": per_item,
                "limit": t["first_sync_graph_requests_per_item_max"],
                "met": None
                if per_item is None
                else per_item <= t["first_sync_graph_requests_per_item_max"],
                "complete": bool(r.get("ok")),
            }
        )
    for key in ("first_sync", "reverse"):
        for workers in _worker_counts(doc.get(key, [])):
            sizes = _by_size(doc.get(key, []), workers)
            if 1 not in sizes or 10 not in sizes:
                continue
            one, ten = sizes[1], sizes[10]
            ratio = (
                round(ten["items_per_s"] / one["items_per_s"], 2) if one["items_per_s"] else None
            )
            out.append(
                {
                    "target": "10 mailboxes' items/s vs 1 mailbox's >=",
                    "scope": _ARROW[one["direction"]]
                    + ("" if workers == 1 else f", {workers} workers"),
                    "value": ratio,
                    "limit": t["ten_mailboxes_vs_one_rate_min"],
                    "met": None if ratio is None else ratio >= t["ten_mailboxes_vs_one_rate_min"],
                    "complete": bool(one.get("ok") and ten.get("ok")),
                }
            )
    for r in doc.get("idle", []):
        graph = r.get("graph")
        dataverse = r.get("dataverse")
        if not graph or not dataverse:
            continue
        g = graph["per_mailbox_per_min"]["max"]
        d = dataverse["max_per_table_per_min"]
        scope = f"{r['mailboxes']} mailboxes, window {r['window_s']:g} s"
        out.append(
            {
                "target": "idle Graph requests/min per mailbox <=",
                "scope": scope,
                "value": g,
                "limit": t["idle_graph_requests_per_mailbox_per_min_max"],
                "met": g <= t["idle_graph_requests_per_mailbox_per_min_max"],
                "complete": bool(r.get("ok")),
            }
        )
        out.append(
            {
                "target": "idle Dataverse requests/min per table <=",
                "scope": scope,
                "value": d,
                "limit": t["idle_dataverse_requests_per_table_per_min_max"],
                "met": d <= t["idle_dataverse_requests_per_table_per_min_max"],
                "complete": bool(r.get("ok")),
            }
        )
    for r in doc.get("rss", []):
        peak = (r.get("rss_mb") or {}).get("peak_vmhwm")
        out.append(
            {
                "target": "one worker's peak RSS (MB) <=",
                "scope": f"{r['mailboxes']} mailboxes, {r.get('active')} active",
                "value": peak,
                "limit": r.get("target_mb", 512.0),
                "met": None if peak is None else peak <= r.get("target_mb", 512.0),
                "complete": bool(r.get("ok")),
            }
        )
    return out


def failures(doc: dict[str, Any]) -> list[str]:
    """One line per scenario that did not complete cleanly (duplicates, missing, errors)."""
    return [
        f"{r['scenario']}: {r.get('error')}"
        for key in ("first_sync", "reverse", "idle", "rss")
        for r in doc.get(key, [])
        if not r.get("ok")
    ]


def _worker_cpu(r: dict[str, Any]) -> Any:
    """The workers' CPU seconds, summed (older results have only worker-0)."""
    cpu = r.get("cpu_s") or {}
    return cpu.get("workers_total", cpu.get("worker-0"))


def _num(value: Any, fmt: str = ".2f") -> str:
    return "-" if value is None else format(value, fmt)


def summary(doc: dict[str, Any]) -> str:
    """One screen: a row per first sync, the idle cost, the targets, then any failure."""
    lines = [
        "End to end: both emulators at the real Graph/Dataverse limits and `dynasync run` as "
        "separate processes,",
        "  timed from the worker's first request for the new mailboxes to the last item applied "
        "(pickup = wait for its config reload)",
        f"  {'scenario':<24}{'items/s':>8}{'s':>8}{'pickup':>8}{'Graph/it':>9}{'DV/it':>7}"
        f"{'429 G/D':>9}{'wCPU s':>8}  check",
    ]
    for key in ("first_sync", "reverse"):
        for r in doc.get(key, []):
            g, d = r.get("graph") or {}, r.get("dataverse") or {}
            copies = sum(
                int((r.get(k) or {}).get("duplicates") or 0) for k in ("check", "source_check")
            )
            verdict = "ok" if r.get("ok") else (f"DUPLICATES {copies}" if copies else "FAILED")
            label = f"{_ARROW[r['direction']]} {r['mailboxes']}x{r['items_per_mailbox']}"
            label += f" w{r.get('workers', 1)}"
            throttled = f"{g.get('throttled_429', '-')}/{d.get('throttled_429', '-')}"
            lines.append(
                f"  {label:<24}{_num(r.get('items_per_s'), '.1f'):>8}"
                f"{_num(r.get('seconds'), '.1f'):>8}{_num(r.get('pickup_s'), '.1f'):>8}"
                f"{_num(g.get('per_item')):>9}{_num(d.get('per_item')):>7}{throttled:>9}"
                f"{_num(_worker_cpu(r), '.1f'):>8}  {verdict}"
            )
    for r in doc.get("idle", []):
        if r.get("graph"):
            g, d = r["graph"], r["dataverse"]
            lines.append(
                f"  idle, {r['mailboxes']} mailboxes (settle {r['settle_s']:g} s, window "
                f"{r['window_s']:g} s): Graph {g['per_mailbox_per_min']['mean']:.1f}/min per "
                f"mailbox (max {g['per_mailbox_per_min']['max']:.1f}), Dataverse max "
                f"{d['max_per_table_per_min']:.1f}/min per table"
            )
        else:
            lines.append(f"  idle, {r['mailboxes']} mailboxes: {r.get('error')}")
    for r in doc.get("rss", []):
        mem, steps = r.get("rss_mb") or {}, r.get("steps") or {}
        lines.append(
            f"  rss, 1 worker, {r['mailboxes']} mailboxes ({r.get('active')} active): peak "
            f"{_num(mem.get('peak_vmhwm'), '.0f')} MB, settled {_num(mem.get('settled'), '.0f')}"
            f" MB (target {r.get('target_mb', '-')}); ready {_num(steps.get('ready_s'), '.1f')}"
            f" s, every mailbox read {_num(steps.get('all_mailboxes_read_s'), '.1f')} s, all "
            f"applied {_num(steps.get('all_applied_s'), '.1f')} s"
            + ("" if r.get("ok") else f"; {r.get('error')}")
        )
    lines.append("  targets (stated, not asserted):")
    for j in doc.get("judged", []):
        mark = "not judged" if j["met"] is None else ("met" if j["met"] else "NOT met")
        partial = "" if j["complete"] else " (scenario incomplete)"
        lines.append(
            f"    {j['target']} {j['limit']:g}: {j['scope']}: {_num(j['value'])} {mark}{partial}"
        )
    for line in doc.get("failures", []):
        lines.append(f"  FAILED {line[:300]}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------- the plot

_W, _H = 640, 400
_LEFT, _RIGHT, _TOP, _BOTTOM = 70, 170, 40, 60
#: Per direction, a shade per worker count (1, 2, 3, then again); a dash pattern per count too.
_COLOURS = {
    "crm_to_outlook": ("#1f6fb4", "#5e9fd6", "#0b3a66"),
    "outlook_to_crm": ("#d9661f", "#f0a060", "#8a3a08"),
}
_DASHES = ("", ' stroke-dasharray="8,3"', ' stroke-dasharray="3,3"')


def _esc(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _nice_max(value: float) -> float:
    if value <= 0:
        return 1.0
    step = 10.0 ** math.floor(math.log10(value))
    for m in (1.0, 2.0, 2.5, 5.0, 10.0):
        if value <= m * step:
            return m * step
    return 10 * step


def plot_svg(doc: dict[str, Any]) -> str:
    """items/s against mailboxes (log x), one line per direction, open markers for a scenario
    that did not complete, and a dotted line of perfect scaling from 1 mailbox."""
    series: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for key in ("first_sync", "reverse"):
        for r in doc.get(key, []):
            if r.get("items_per_s") is not None:
                series.setdefault((key, int(r.get("workers", 1))), []).append(r)
    for rs in series.values():
        rs.sort(key=lambda r: int(r["mailboxes"]))
    points = [r for rs in series.values() for r in rs]
    sizes = sorted({int(r["mailboxes"]) for r in points}) or [1, 10]
    x_lo, x_hi = math.log10(min(sizes)), math.log10(max(sizes))
    if x_hi - x_lo < 1e-9:
        x_lo, x_hi = x_lo - 0.5, x_hi + 0.5
    y_max = _nice_max(max((float(r["items_per_s"]) for r in points), default=1.0) * 1.1)
    pw, ph = _W - _LEFT - _RIGHT, _H - _TOP - _BOTTOM

    def x(n: float) -> float:
        return _LEFT + (math.log10(n) - x_lo) / (x_hi - x_lo) * pw

    def y(v: float) -> float:
        return _TOP + ph - v / y_max * ph

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{_W}" height="{_H}" '
        f'viewBox="0 0 {_W} {_H}" font-family="sans-serif" font-size="12">',
        f'<rect width="{_W}" height="{_H}" fill="white"/>',
        f'<clipPath id="plot"><rect x="{_LEFT}" y="{_TOP}" width="{pw}" height="{ph}"/></clipPath>',
        f'<text x="{_LEFT}" y="22" font-size="14">{_esc(_title(doc))}</text>',
    ]
    for i in range(6):
        v = y_max * i / 5
        out.append(
            f'<line x1="{_LEFT}" y1="{y(v):.1f}" x2="{_LEFT + pw}" y2="{y(v):.1f}" '
            f'stroke="#ddd"/><text x="{_LEFT - 8}" y="{y(v) + 4:.1f}" '
            f'text-anchor="end">{v:g}</text>'
        )
    for n in sizes:
        out.append(
            f'<line x1="{x(n):.1f}" y1="{_TOP}" x2="{x(n):.1f}" y2="{_TOP + ph}" stroke="#eee"/>'
            f'<text x="{x(n):.1f}" y="{_TOP + ph + 18}" text-anchor="middle">{n}</text>'
        )
    out.append(
        f'<rect x="{_LEFT}" y="{_TOP}" width="{pw}" height="{ph}" fill="none" stroke="#888"/>'
        f'<text x="{_LEFT + pw / 2}" y="{_H - 18}" text-anchor="middle">mailboxes '
        f"(log scale; each with {_items(points)} contacts)</text>"
        f'<text transform="translate(18 {_TOP + ph / 2}) rotate(-90)" '
        f'text-anchor="middle">items/s</text>'
    )
    legend_y = _TOP + 10
    for (_, workers), rs in sorted(series.items()):
        colour = _COLOURS[rs[0]["direction"]][(workers - 1) % 3]
        dash = _DASHES[(workers - 1) % len(_DASHES)]
        path = " ".join(f"{x(r['mailboxes']):.1f},{y(r['items_per_s']):.1f}" for r in rs)
        out.append(
            f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2"{dash}/>'
        )
        one = next((r for r in rs if int(r["mailboxes"]) == 1), None)
        if one is not None and len(rs) > 1 and workers == 1:
            hi = max(int(r["mailboxes"]) for r in rs)
            steps = [10 ** (math.log10(hi) * k / 40) for k in range(41)]  # a curve on log x
            ideal = [(n, float(one["items_per_s"]) * n) for n in steps]
            dots = " ".join(f"{x(n):.1f},{y(v):.1f}" for n, v in ideal)
            out.append(
                f'<polyline points="{dots}" fill="none" stroke="{colour}" '
                f'stroke-dasharray="2,4" stroke-width="1" clip-path="url(#plot)"/>'
            )
        for r in rs:
            fill = colour if r.get("ok") else "white"
            out.append(
                f'<circle cx="{x(r["mailboxes"]):.1f}" cy="{y(r["items_per_s"]):.1f}" r="4" '
                f'fill="{fill}" stroke="{colour}" stroke-width="2"><title>'
                f"{_esc(str(r['scenario']))}: {r['items_per_s']} items/s</title></circle>"
            )
        lx = _LEFT + pw + 12
        out.append(
            f'<line x1="{lx}" y1="{legend_y}" x2="{lx + 20}" y2="{legend_y}" stroke="{colour}" '
            f'stroke-width="2"{dash}/><text x="{lx + 26}" y="{legend_y + 4}">'
            f"{_esc(_ARROW[rs[0]['direction']])}, {workers} w</text>"
        )
        legend_y += 18
    lx = _LEFT + pw + 12
    out.append(
        f'<line x1="{lx}" y1="{legend_y}" x2="{lx + 20}" y2="{legend_y}" stroke="#555" '
        f'stroke-dasharray="2,4"/><text x="{lx + 26}" y="{legend_y + 4}">1 mailbox x N</text>'
        f'<circle cx="{lx + 10}" cy="{legend_y + 18}" r="4" fill="white" stroke="#555" '
        f'stroke-width="2"/><text x="{lx + 26}" y="{legend_y + 22}">incomplete</text>'
    )
    out.append("</svg>")
    return "\n".join(out) + "\n"


def _items(points: list[dict[str, Any]]) -> str:
    counts = sorted({int(r["items_per_mailbox"]) for r in points})
    return "/".join(map(str, counts)) or "?"


def _title(doc: dict[str, Any]) -> str:
    workers = sorted({int(r["workers"]) for k in ("first_sync", "reverse") for r in doc.get(k, [])})
    w = ",".join(map(str, workers)) or "1"
    return f"First sync through both emulators, {w} worker(s): items/s"
