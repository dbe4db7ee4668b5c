"""The soak's verdicts: both sides against what the users wrote, dlq, RSS, log size."""

from __future__ import annotations

import re
import statistics
from dataclasses import dataclass
from typing import Any

from pipeline.dlq import DlqRecord
from soak.edits import Editor

#: Error text of a failure that passes by itself: a retry would have fixed it.
_TRANSIENT = re.compile(
    r"\b(429|500|502|503|504)\b|timeout|timed out|reset|connection refused|disconnect|"
    r"temporarily|throttl|unavailable|NotEnoughReplicas|NotLeader|LeaderNotAvailable|"
    r"KafkaConnectionError|RequestTimedOut",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Sides:
    """Every contact of the run as each side holds it."""

    outlook: dict[str, list[dict[str, Any]]]  # surname -> copies (with "_mailbox")
    crm: dict[str, list[dict[str, Any]]]  # surname -> rows


async def read_sides(editor: Editor) -> Sides:
    """Read both emulators directly."""
    outlook: dict[str, list[dict[str, Any]]] = {}
    for user in editor.stack.users:
        for item in await editor.outlook_contacts(user):
            surname = item.get("surname") or ""
            if surname.startswith(f"Soak{editor.tag}"):
                outlook.setdefault(surname, []).append({**item, "_mailbox": user.mailbox_id})
    crm: dict[str, list[dict[str, Any]]] = {}
    for row in await editor.crm_contacts():
        surname = row.get("lastname") or ""
        if surname.startswith(f"Soak{editor.tag}"):
            crm.setdefault(surname, []).append(row)
    return Sides(outlook, crm)


def duplicates(editor: Editor, sides: Sides) -> list[str]:
    """Contacts with more than one copy on a side, or one in another mailbox (never heal)."""
    found = []
    for surname, copies in sides.outlook.items():
        if len(copies) > 1:
            found.append(f"{surname}: {len(copies)} Outlook copies")
        contact = editor.contacts.get(surname)
        wrong = [c for c in copies if contact and c["_mailbox"] != contact.user.mailbox_id]
        if wrong:
            found.append(f"{surname}: in another mailbox ({wrong[0]['_mailbox']})")
    for surname, rows in sides.crm.items():
        if len(rows) > 1:
            found.append(f"{surname}: {len(rows)} CRM rows")
        if surname not in editor.contacts:
            found.append(f"{surname}: a CRM row the soak never created")
    return found


def disagreements(editor: Editor, sides: Sides) -> list[str]:
    """Contacts missing on a side or whose fields differ from the last write of their side."""
    found = []
    for surname, c in editor.contacts.items():
        copies, rows = sides.outlook.get(surname, []), sides.crm.get(surname, [])
        if not copies:
            found.append(f"{surname}: not in Outlook")
            continue
        if not rows:
            found.append(f"{surname}: not in the CRM")
            continue
        o, r = copies[0], rows[0]
        if o.get("jobTitle") != c.title or r.get("jobtitle") != c.title:
            found.append(
                f"{surname}: jobtitle CRM {r.get('jobtitle')!r} Outlook {o.get('jobTitle')!r},"
                f" last written {c.title!r} (CRM side)"
            )
        if o.get("mobilePhone") != c.mobile or r.get("mobilephone") != c.mobile:
            found.append(
                f"{surname}: mobile CRM {r.get('mobilephone')!r} Outlook "
                f"{o.get('mobilePhone')!r}, last written {c.mobile!r} (Outlook side)"
            )
    return found


def versions(sides: Sides) -> dict[str, tuple[str, ...]]:
    """Version stamps of both sides (equal twice apart: nothing keeps rewriting)."""
    seen = {f"o:{s}": tuple(str(c.get("changeKey")) for c in cs) for s, cs in sides.outlook.items()}
    seen |= {
        f"c:{s}": tuple(str(r.get("versionnumber")) for r in rs) for s, rs in sides.crm.items()
    }
    return seen


def dlq_entries(records: list[DlqRecord]) -> list[dict[str, Any]]:
    """Each dlq record with its reason, error and whether a retry would have fixed it."""
    out = []
    for r in records:
        entry = dict(r.summary())
        entry["retryable"] = bool(_TRANSIENT.search(r.error)) and r.reason != "alert"
        out.append(entry)
    return out


def rss_figures(samples: list[tuple[float, int, int]], run_s: float) -> dict[str, Any]:
    """first/last/max RSS (MiB) of ``(t, life, KiB)`` samples, the median of the first and of
    the last quarter of the run, and their ratio (the flatness check)."""
    if not samples:
        return {"samples": 0}
    mib = [(t, k / 1024) for t, _, k in samples]
    first_q = [v for t, v in mib if t < run_s / 4] or [mib[0][1]]
    last_q = [v for t, v in mib if t >= run_s * 3 / 4] or [mib[-1][1]]
    return {
        "samples": len(samples),
        "lives": len({life for _, life, _ in samples}),
        "first_mib": round(mib[0][1], 1),
        "last_mib": round(mib[-1][1], 1),
        "max_mib": round(max(v for _, v in mib), 1),
        "first_quarter_median_mib": round(statistics.median(first_q), 1),
        "last_quarter_median_mib": round(statistics.median(last_q), 1),
        "growth": round(statistics.median(last_q) / statistics.median(first_q), 3),
        "life_peaks_mib": _life_peaks(samples),
    }


def _life_peaks(samples: list[tuple[float, int, int]]) -> list[list[float]]:
    """``[start s, peak MiB]`` of each life of the worker (a leak across lives shows here)."""
    peaks: dict[int, list[float]] = {}
    for t, life, kib in samples:
        entry = peaks.setdefault(life, [round(t, 1), 0.0])
        entry[1] = max(entry[1], round(kib / 1024, 1))
    return list(peaks.values())
