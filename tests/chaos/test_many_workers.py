"""Three ``dynasync run`` workers share 30 mailboxes on the real broker; one is killed -9 and
later started again.

- The mailboxes are spread over the workers by partition: each worker reads and writes the
  mailboxes of the partitions its Outlook writer holds. The workers' ownership claims (the
  ``mailboxes owned`` lines they log, with the time) never name one mailbox on two live
  workers at once, and the Graph emulator's request log (each write with its process's
  User-Agent and its start and end) shows no mailbox written by two processes at once.
- CRM contacts created before, during and after the kill arrive in their mailbox exactly once;
  a run of Outlook edits of one contact reaches the CRM ending with the last one (per-mailbox
  order); after the restart the killed worker takes mailboxes again.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer

from tests.e2e.proc import PipelineProcess
from tests.e2e.world import User, World, eventually, open_world, register

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(600)]

MAILBOXES = 30
PARTITIONS = 6
_OWNED = re.compile(
    r"^(?P<at>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) .*mailboxes owned: (?P<n>\d+) of \d+ "
    r"enabled \(partitions [^)]*\)(?:: (?P<upns>.*))?$"
)


def claims(log_text: str) -> list[tuple[datetime, frozenset[str]]]:
    """A worker's ownership claims in its log: (when, the mailboxes it says it owns)."""
    out = []
    for line in log_text.splitlines():
        m = _OWNED.match(line)
        if m:
            upns = frozenset(u.strip() for u in (m["upns"] or "").split(",") if u.strip())
            assert int(m["n"]) == len(upns), f"a truncated ownership line: {line}"
            at = datetime.strptime(m["at"], "%Y-%m-%d %H:%M:%S,%f")
            out.append((at, upns))
    return out


def overlaps(
    workers: dict[str, list[tuple[datetime, frozenset[str]]]],
    ends: dict[str, list[tuple[datetime, datetime]]],
) -> list[str]:
    """Mailboxes two workers claimed at the same time. A claim lasts until the worker's next
    claim, or until the worker died (``ends``: its lives as (start, end))."""
    spans: list[tuple[datetime, datetime, str, str]] = []
    for name, seq in workers.items():
        for i, (at, upns) in enumerate(seq):
            nxt = seq[i + 1][0] if i + 1 < len(seq) else datetime.max
            death = min((e for s, e in ends.get(name, []) if s <= at < e), default=datetime.max)
            for upn in upns:
                spans.append((at, min(nxt, death), name, upn))
    found = []
    for i, (a0, a1, an, au) in enumerate(spans):
        for b0, b1, bn, bu in spans[i + 1 :]:
            if au == bu and an != bn and a0 < b1 and b0 < a1:
                found.append(f"{au}: {an} [{a0}, {a1}) and {bn} [{b0}, {b1})")
    return found


def concurrent_writers(writes: list[dict[str, Any]]) -> list[str]:
    """Writes to one mailbox by two processes (User-Agents) whose times overlap."""
    by_mailbox: dict[str, list[dict[str, Any]]] = {}
    for r in writes:
        by_mailbox.setdefault(r["mailbox"], []).append(r)
    found = []
    for mailbox, rows in by_mailbox.items():
        rows.sort(key=lambda r: r["started"])
        for i, a in enumerate(rows):
            for b in rows[i + 1 :]:
                if b["started"] >= a["ended"]:
                    break
                if a["agent"] != b["agent"]:
                    found.append(
                        f"{mailbox}: {a['agent']} {a['path']} and {b['agent']} {b['path']}"
                    )
    return found


async def _dlq(w: World) -> list[str]:
    """What the pipeline parked: reason and error of each dlq record."""
    topic = f"{w.settings.kafka.topic_prefix}dlq"
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=w.settings.kafka.bootstrap, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        out = []
        while batch := await consumer.getmany(timeout_ms=2000):
            for records in batch.values():
                for r in records:
                    headers = {k: v.decode(errors="replace") for k, v in r.headers or ()}
                    out.append(
                        f"{headers.get('x-dynasync-reason')}: {headers.get('x-dynasync-error')}"
                    )
        return out
    finally:
        await consumer.stop()


async def _create(w: World, user: User, surname: str) -> None:
    resp = await w.crm("POST", "contacts", {"firstname": "W", "lastname": surname}, user=user)
    assert resp.status_code in (200, 201), resp.text


async def _exactly_once(w: World, wanted: dict[str, User]) -> bool | None:
    """True once every surname is in its own mailbox once; fails on any duplicate."""
    missing = 0
    for user in w.users:
        names = [c.get("surname") for c in await w.outlook_contacts(user)]
        for surname, owner in wanted.items():
            count = names.count(surname)
            assert count <= 1, f"{surname}: {count} copies in {user.upn}"
            if owner == user and count == 0:
                missing += 1
            assert owner == user or count == 0, f"{surname} in the wrong mailbox {user.upn}"
    return None if missing else True


async def test_three_workers_share_the_mailboxes_and_survive_a_kill(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    tag = uuid.uuid4().hex[:6]
    async with open_world(kafka_bootstrap, tmp_path, users=MAILBOXES, partitions=PARTITIONS) as w:
        procs = [
            PipelineProcess(w, tmp_path / f"worker-{n}.log", poll_s=0.5, config_refresh_s=4.0)
            for n in (1, 2, 3)
        ]
        lives: dict[str, list[tuple[datetime, datetime]]] = {}
        started: dict[str, datetime] = {}
        try:
            for n, proc in enumerate(procs, 1):
                started[f"worker-{n}"] = datetime.now()
                await proc.start()

            def owned_now() -> dict[str, frozenset[str]]:
                return {
                    f"worker-{n}": (claims(p.log_text()) or [(datetime.min, frozenset())])[-1][1]
                    for n, p in enumerate(procs, 1)
                }

            async def spread() -> bool | None:
                owned = owned_now()
                union = frozenset().union(*owned.values())
                ok = len(union) == MAILBOXES and all(owned.values())
                return True if ok else None

            await eventually(spread, 90, "the 30 mailboxes spread over the three workers", 0.5)

            # a mailbox registered now, while three workers run: its CRM rows are read only
            # once every worker has reloaded the configuration (not routed to nobody by a
            # worker that has not, nor parked as an unknown mailbox's)
            late = await register(w, MAILBOXES)
            late_wanted: dict[str, User] = {}
            for k in range(3):
                late_wanted[f"Late{tag}n{k}"] = late
                await _create(w, late, f"Late{tag}n{k}")

            wanted: dict[str, User] = dict(late_wanted)
            for i, user in enumerate(w.users):  # before the kill
                wanted[f"Before{tag}n{i}"] = user
                await _create(w, user, f"Before{tag}n{i}")
            await eventually(lambda: _exactly_once(w, wanted), 180, "the first contacts", 0.5)

            # a run of Outlook edits of one contact per mailbox of the first worker
            victim = owned_now()["worker-1"]
            edited: dict[str, str] = {}
            for user in w.users:
                if user.upn not in victim:
                    continue
                for contact in await w.outlook_contacts(user):
                    if str(contact.get("surname", "")).startswith(f"Before{tag}"):
                        for k in range(3):
                            resp = await w.outlook(
                                "PATCH",
                                f"contacts/{contact['id']}",
                                {"jobTitle": f"E{k}"},
                                user=user,
                            )
                            assert resp.status_code == 200, resp.text
                        edited[contact["surname"]] = "E2"
            for i, user in enumerate(w.users):  # while a worker dies
                wanted[f"During{tag}n{i}"] = user
                await _create(w, user, f"During{tag}n{i}")
                if i == MAILBOXES // 2:
                    await procs[0].kill()
                    lives["worker-1"] = [(started["worker-1"], datetime.now())]
            await eventually(lambda: _exactly_once(w, wanted), 180, "contacts across the kill", 0.5)

            async def edits_arrived() -> bool | None:
                rows = {r.get("lastname"): r for r in await w.crm_contacts()}
                done = all(rows.get(s, {}).get("jobtitle") == t for s, t in edited.items())
                return True if done else None

            await eventually(edits_arrived, 120, "the Outlook edits, ending with the last", 0.5)

            started["worker-1b"] = datetime.now()
            await procs[0].start()
            for i, user in enumerate(w.users):  # after the restart
                wanted[f"After{tag}n{i}"] = user
                await _create(w, user, f"After{tag}n{i}")
            await eventually(lambda: _exactly_once(w, wanted), 180, "contacts after restart", 0.5)

            async def rejoined() -> bool | None:
                return True if owned_now()["worker-1"] else None

            await eventually(rejoined, 90, "the restarted worker owning mailboxes again", 0.5)
            await asyncio.sleep(2)
            assert await _exactly_once(w, wanted)  # nothing arrived twice late
        finally:
            for proc in procs:
                await proc.kill()

        # the killed worker's first life and its second are one log: split at the kill
        seqs = {f"worker-{n}": claims(p.log_text()) for n, p in enumerate(procs, 1)}
        problems = overlaps(seqs, lives)
        assert not problems, "\n".join(problems)
        # and what Graph saw: no mailbox written by two worker processes at once
        log = (await w.http.get(f"{w.graph}/_emulator/requests")).json()["value"]
        writes = [
            r
            for r in log
            if r["method"] in ("POST", "PATCH", "DELETE")
            and r["agent"].startswith("Dynasync/")
            and "/subscriptions" not in r["path"]
        ]
        assert len({r["agent"] for r in writes}) >= 3, "writes from fewer than three processes"
        clashes = concurrent_writers(writes)
        assert not clashes, "\n".join(clashes[:20])
        parked = await _dlq(w)
        assert not parked, parked[:5]
        print(f"\n{len(wanted)} contacts over {MAILBOXES} mailboxes on 3 workers, one killed")
