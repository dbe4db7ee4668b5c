"""What ``dynasync conflicts list`` counts as open, from the records the engine writes (and
garbage); its bad arguments."""

from __future__ import annotations

import orjson
import pytest

from pipeline.conflicts import ConflictLog
from pipeline.plan import ConflictEntry, conflict_key
from pipeline.rules import ConflictRecord
from schemas.conflicts import ConflictClosed
from schemas.types import ConflictPolicy, Side
from tests.unit.cli.invoke import dynasync

NOW = "2030-01-01T00:00:00Z"


def entry(
    cid: str,
    field: str = "firstname",
    policy: ConflictPolicy = "manual",
    winner: Side | None = None,
    crm: str = "C",
) -> bytes:
    record = ConflictRecord(field, "B", "O", crm, policy, winner)
    return ConflictEntry(cid, "mbx", "org", "corr", "contact", record, policy, "chg", NOW).to_json()


def closed(cid: str) -> bytes:
    return ConflictClosed(
        cid, "mbx", "corr", "firstname", "crm", "r", True, "took crm", NOW
    ).to_json()


def test_open_conflicts_are_manual_unclosed_and_not_superseded() -> None:
    log = ConflictLog()
    for n, raw in enumerate(
        [
            entry("a"),  # superseded by c (same pair and field, newer values)
            entry("b", field="lastname"),  # closed below
            entry("c", crm="C2"),
            entry("d", field="jobtitle", policy="crm_wins", winner="crm"),  # decided already
            entry("e", field="_delete"),
            closed("b"),
            b"not json",
            b"[1]",
            orjson.dumps({"conflict_id": "x", "mailbox_id": "mbx", "kind": "robot"}),
            orjson.dumps({"record_type": "conflict_closed", "conflict_id": 7}),
        ]
    ):
        log.add(raw, 0, n)
    assert [r.conflict_id for r in log.open()] == ["c"]
    assert log.open(["other"]) == [] and log.unreadable == 4
    (c,) = log.open()
    assert c.key == conflict_key(
        "corr", ConflictRecord("firstname", "B", "O", "C2", "manual", None)
    )
    assert log.find("b") is not None and log.find("zzz") is None


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("resolve", "abc"), "--take"),
        (("resolve", "abc", "--take", "both"), "both"),
        (("resolve", "a b", "--take", "crm"), "conflict id"),
        (("list", "--mailbox", "a b"), "a b"),
    ],
)
def test_bad_arguments_are_one_line_and_exit_2(args: tuple[str, ...], says: str) -> None:
    ran = dynasync("conflicts", *args, "--bootstrap", "127.0.0.1:1", "--timeout", "0.5")
    assert ran.code == 2 and len(ran.err_lines) == 1 and says in ran.err, ran
