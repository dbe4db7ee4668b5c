"""``dynasync mailbox`` on the real broker: a mailbox is registered once whatever spelling of it
is typed (UPN and SMTP address in any case, the mailbox id as an address or an object id in any
case, the CRM user's GUID in any case or with braces), each refusal naming the registration it
clashes with; tracked folders are added (at most 25), replaced, listed and removed; garbage
changes nothing."""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest

from pipeline.cli.main import main
from pipeline.cli.topics import ensure_topics
from pipeline.config_store import ConfigStore
from pipeline.settings import KafkaSettings

pytestmark = pytest.mark.kafka

SU1 = "11111111-1111-1111-1111-111111111111"
SU2 = "22222222-2222-2222-2222-222222222222"
SU3 = "33333333-3333-3333-3333-333333333333"
OID = "0f8fad5b-d9cb-469f-a165-70867728950e"
ACCOUNT = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"


@pytest.fixture
async def kafka(kafka_bootstrap: str) -> KafkaSettings:
    settings = KafkaSettings(
        bootstrap=kafka_bootstrap, topic_prefix=f"cli{uuid.uuid4().hex[:10]}.", partitions=1
    )
    await ensure_topics(settings)
    return settings


class Cli:
    def __init__(self, kafka: KafkaSettings, capsys: pytest.CaptureFixture[str]) -> None:
        self.kafka = kafka
        self.capsys = capsys

    async def __call__(self, *args: str) -> tuple[int, str]:
        """Run ``dynasync args``: its exit status and what it printed (stderr on failure)."""
        argv = [
            *args,
            "--bootstrap",
            self.kafka.bootstrap,
            "--topic-prefix",
            self.kafka.topic_prefix,
        ]

        def run() -> int:
            try:
                return main(argv)
            except SystemExit as exc:  # argparse: garbage on the command line
                return int(exc.code or 0)

        code = await asyncio.to_thread(run)
        out = self.capsys.readouterr()
        return code, out.out if code == 0 else out.err


def add(upn: str, org: str, su: str, *more: str) -> tuple[str, ...]:
    return ("mailbox", "add", "--upn", upn, "--org", org, "--systemuser", su, *more)


async def test_one_mailbox_one_crm_user_one_organisation_whatever_is_typed(
    kafka: KafkaSettings, capsys: pytest.CaptureFixture[str]
) -> None:
    cli = Cli(kafka, capsys)
    for org, url in (
        ("contoso", "https://contoso.crm.dynamics.com"),
        ("fabrikam", "https://f.example"),
    ):
        assert (await cli("org", "add", "--org", org, "--url", url))[0] == 0
    assert (await cli(*add("ann@contoso.com", "contoso", SU1, "--smtp", "ann.smith@contoso.com")))[
        0
    ] == 0
    assert (await cli(*add("olga@contoso.com", "contoso", SU2, "--mailbox-id", OID.upper())))[
        0
    ] == 0
    refused = [
        # ANN@ is ann@: the mailbox id is the lower-cased address, already there
        (add("ANN@Contoso.COM", "fabrikam", SU3), "mailbox ann@contoso.com already exists"),
        # an address-shaped mailbox id, with another UPN typed beside it
        (
            add("ann2@contoso.com", "fabrikam", SU3, "--mailbox-id", "ANN.SMITH@CONTOSO.COM"),
            "is already registered as mailbox 'ann@contoso.com'",
        ),
        # the SMTP address of one is the UPN of the other, in any case
        (add("Ann.Smith@contoso.com", "fabrikam", SU3), "UPN Ann.Smith@contoso.com is already"),
        (
            add("bob@contoso.com", "fabrikam", SU3, "--smtp", "ANN@contoso.com"),
            "SMTP address ANN@contoso.com is already registered as mailbox 'ann@contoso.com'",
        ),
        # the Graph object id in any case
        (
            add("o2@contoso.com", "fabrikam", SU3, "--mailbox-id", OID),
            f"mailbox {OID} already exists",
        ),
        # the CRM user, its GUID in capitals and braces, in the same organisation
        (
            add("carl@contoso.com", "contoso", "{" + SU1.upper() + "}"),
            f"CRM user {SU1} of organisation 'contoso' is already linked to mailbox",
        ),
    ]
    for argv, message in refused:
        code, err = await cli(*argv)
        assert (code, err.count("\n")) == (1, 1), (argv, err)
        assert message in err, (argv, err)
    # garbage is refused before anything is written
    for argv in (
        add("not-an-address", "fabrikam", SU3),
        add("dave@contoso.com", "fabrikam", "not-a-guid"),
        add("dave@contoso.com", "fabrikam", SU3, "--smtp", "dave at contoso"),
        add("dave@contoso.com", "fabrikam", SU3, "--mailbox-id", "../../users"),
    ):
        code, err = await cli(*argv)
        assert code == 2 and "Traceback" not in err, (argv, err)
    # what was registered, as registered: normalised keys and ids
    code, out = await cli("mailbox", "list", "--json")
    boxes = {m["mailbox_id"]: m for m in json.loads(out)}
    assert set(boxes) == {"ann@contoso.com", OID}
    assert boxes[OID]["aad_object_id"] == OID and boxes[OID]["upn"] == "olga@contoso.com"
    assert boxes["ann@contoso.com"]["smtp_address"] == "ann.smith@contoso.com"
    # another CRM user of another organisation for another mailbox is fine
    assert (await cli(*add("dave@contoso.com", "fabrikam", SU1)))[0] == 0
    async with ConfigStore(kafka) as store:
        assert store.snapshot.problems == []
        assert len(store.snapshot.mailboxes) == 3


async def test_tracked_folders_are_configured_per_mailbox(
    kafka: KafkaSettings, capsys: pytest.CaptureFixture[str]
) -> None:
    cli = Cli(kafka, capsys)
    assert (await cli("org", "add", "--org", "contoso", "--url", "https://c.example"))[0] == 0
    assert (await cli(*add("ann@contoso.com", "contoso", SU1)))[0] == 0
    for n in range(25):
        code, out = await cli(
            "mailbox", "track-folder", "ANN@contoso.com", "--folder", f"AAMkF{n}=",
            "--regarding", f"account:{ACCOUNT}",
        )  # fmt: skip
        assert code == 0, out
    code, err = await cli(
        "mailbox", "track-folder", "ann@contoso.com", "--folder", "AAMkF25=",
        "--regarding", f"account:{ACCOUNT}",
    )  # fmt: skip
    assert code == 1 and "tracks 25 folders already; at most 25" in err
    # the same folder again: its record is replaced, not a 26th folder
    code, _ = await cli(
        "mailbox", "track-folder", "ann@contoso.com", "--folder", "AAMkF3=",
        "--regarding", f"opportunity:{{{SU2.upper()}}}",
    )  # fmt: skip
    assert code == 0
    assert (await cli("mailbox", "untrack-folder", "ann@contoso.com", "--folder", "AAMkF0="))[
        0
    ] == 0
    code, err = await cli("mailbox", "untrack-folder", "ann@contoso.com", "--folder", "AAMkF0=")
    assert code == 1 and "does not track folder AAMkF0=" in err
    code, out = await cli("mailbox", "show", "ann@contoso.com")
    assert "24 tracked" in out and f"AAMkF3= -> opportunity:{SU2}" in out
    async with ConfigStore(kafka) as store:
        folders = store.snapshot.mailboxes["ann@contoso.com"].tracked_folders
    assert len(folders) == 24 and "AAMkF0=" not in {f.folder_id for f in folders}
    (three,) = [f for f in folders if f.folder_id == "AAMkF3="]
    assert (three.regarding_table, three.regarding_id) == ("opportunity", SU2)
    code, err = await cli(
        "mailbox", "track-folder", "nobody@contoso.com", "--folder", "AAMkF=",
        "--regarding", f"account:{ACCOUNT}",
    )  # fmt: skip
    assert code == 1 and "mailbox 'nobody@contoso.com' does not exist" in err
