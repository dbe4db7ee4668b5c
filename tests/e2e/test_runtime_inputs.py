"""The runtime's own inputs: organisation URLs, reader options, credentials, fan-out."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from pipeline.config_store import ConfigSnapshot
from pipeline.runtime import RuntimeOptions, fan_out
from pipeline.settings import DataverseSettings
from pipeline.sinks import api_root, dataverse_token
from schemas.models import ItemChange, Mailbox, MailboxStatus, Organisation
from schemas.types import Op

USER = "00000000-0000-4000-8000-0000000000aa"
OTHER = "00000000-0000-4000-8000-0000000000bb"


def test_api_root_of_an_organisation_url() -> None:
    assert api_root("https://org.crm.dynamics.com") == "https://org.crm.dynamics.com/api/data/v9.2"
    assert api_root("http://127.0.0.1:8082/") == "http://127.0.0.1:8082/api/data/v9.2"
    kept = "http://127.0.0.1:8082/api/data/v9.1"
    assert api_root(kept) == kept


@pytest.mark.parametrize("url", ["", "org.crm.dynamics.com", "ftp://org", "https://o/x?q=1"])
def test_api_root_refuses_garbage(url: str) -> None:
    with pytest.raises(ValueError, match="organisation URL"):
        api_root(url)


@pytest.mark.parametrize(
    "make",
    [
        lambda: RuntimeOptions(crm_poll_s=0),
        lambda: RuntimeOptions(outlook_poll_s=-1),
        lambda: RuntimeOptions(crm_tables=()),
        lambda: RuntimeOptions(crm_poll_s=1e9),
    ],
)
def test_runtime_options_refuse_garbage(make: Callable[[], RuntimeOptions]) -> None:
    with pytest.raises(ValueError):
        make()


def test_dataverse_without_credentials_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="Dataverse credentials missing"):
        dataverse_token(DataverseSettings(), "https://org.crm.dynamics.com/api/data/v9.2")


def _snapshot() -> ConfigSnapshot:
    snap = ConfigSnapshot()
    snap.apply(Organisation(org_id="o", url="http://127.0.0.1:1"))
    rows: list[tuple[str, str, MailboxStatus]] = [
        ("m1", USER, "enabled"),
        ("m2", OTHER, "enabled"),
        ("m3", USER, "registered"),
    ]
    for mbx, user, status in rows:
        snap.apply(
            Mailbox(
                mailbox_id=mbx, upn=f"{mbx}@x.test", org_id="o", systemuser_id=user, status=status
            )
        )
    return snap


def _contact(owner: str, op: Op = "upsert") -> ItemChange:
    return ItemChange(
        change_id="c1",
        side="crm",
        org_id="o",
        kind="contact",
        op=op,
        item_id="11111111-0000-4000-8000-000000000001",
        version="5",
        observed_at="2030-01-01T00:00:00Z",
        table="contact",
        attributes={"ownerid": owner, "statecode": 0},
    )


def test_fan_out_sends_held_records_and_marks_the_others_left_filter() -> None:
    copies = {c.mailbox_id: c for c in fan_out(_snapshot(), _contact(USER))}
    assert set(copies) == {"m1", "m2"}  # m3 is not enabled
    assert "left_filter" not in copies["m1"].attributes
    assert copies["m2"].attributes["left_filter"] is True
    deletes = fan_out(_snapshot(), _contact(USER, "delete"))
    assert sorted(c.mailbox_id or "" for c in deletes) == ["m1", "m2"]
    assert all("left_filter" not in c.attributes for c in deletes)
