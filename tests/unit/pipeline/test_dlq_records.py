"""Reading dlq records tolerates whatever was parked: missing or garbled headers."""

from __future__ import annotations

from pipeline.dlq import DlqRecord, Selection, parse_record
from pipeline.stages.publish import DLQ_OFFSET, DLQ_PARTITION, DLQ_REASON, DLQ_TOPIC


def test_a_record_without_headers_is_unknown_and_has_no_origin() -> None:
    r = parse_record(0, 7, None, None, None)
    assert (r.reason, r.origin_topic, r.origin_offset, r.value, r.mailbox_id) == (
        "unknown",
        "",
        None,
        b"",
        "",
    )


def test_garbled_headers_are_read_as_far_as_they_make_sense() -> None:
    headers: list[tuple[str, bytes | None]] = [
        (DLQ_REASON, b"poison"),
        (DLQ_TOPIC, b"\xff\xfechanges"),
        (DLQ_PARTITION, b"not a number"),
        (DLQ_OFFSET, None),
        ("other", b"x"),
    ]
    r = parse_record(1, 2, b"mbx-\xff", b"v", headers)
    assert r.reason == "poison" and r.origin_partition is None and r.origin_offset is None
    assert r.origin_topic.endswith("changes") and r.mailbox_id.startswith("mbx-")
    assert r.summary()["origin"] == f"{r.origin_topic}:None:None"


def test_selection_by_reason_and_mailbox() -> None:
    a = DlqRecord(0, 0, b"m1", b"", "poison", "", "t", 0, 0)
    b = DlqRecord(0, 1, b"m2", b"", "refused", "", "t", 0, 1)
    assert [r.offset for r in (a, b) if Selection()(r)] == [0, 1]
    assert [r.offset for r in (a, b) if Selection(frozenset({"refused"}))(r)] == [1]
    assert [r.offset for r in (a, b) if Selection(mailboxes=frozenset({"m1"}))(r)] == [0]
