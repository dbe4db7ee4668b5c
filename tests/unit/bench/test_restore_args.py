"""``python -m bench.restore``: options are validated, and its links are real engine links."""

from __future__ import annotations

import pytest

from bench.restore import RestoreParams, _Table, parse, synced_contact
from pipeline.stages.engine import LinkStore
from pipeline.state import decode_link, encode_link
from schemas.models import ItemChange
from schemas.types import Side


def test_defaults_and_values() -> None:
    assert parse([]) == RestoreParams()
    got = parse(["--links", "500", "--mailboxes", "5", "--runs", "1", "--bootstrap", "h:1"])
    assert (got.links, got.mailboxes, got.runs, got.bootstrap) == (500, 5, 1, "h:1")


@pytest.mark.parametrize(
    "argv",
    [
        ["--links", "0"],
        ["--links", "many"],
        ["--links", "10", "--mailboxes", "11"],
        ["--partitions", "0"],
        ["--runs", "21"],
        ["--bootstrap", "no port"],
        ["--surprise"],
    ],
)
def test_garbage_is_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        parse(argv)
    assert info.value.code == 2
    assert "error:" in capsys.readouterr().err


def test_a_synced_contact_is_a_link_the_engine_finds_by_either_side() -> None:
    link = synced_contact("ada@contoso.test", 7)
    assert decode_link(encode_link(link)) == link
    links, index = _Table(), _Table()
    store = LinkStore(links, index)
    store.put(link)
    assert len(links) == 1 and len(index) == 1  # the Outlook id is indexed, the CRM id derived
    sides: tuple[tuple[Side, str | None], ...] = (
        ("outlook", link.outlook.item_id),
        ("crm", link.crm.item_id),
    )
    for side, item_id in sides:
        assert item_id is not None
        change = ItemChange(
            change_id="c1",
            side=side,
            org_id="contoso",
            kind="contact",
            op="upsert",
            item_id=item_id,
            version="v2",
            observed_at="2030-01-01T00:00:01Z",
            mailbox_id="ada@contoso.test",
        )
        assert store.find(change, "ada@contoso.test") == link
