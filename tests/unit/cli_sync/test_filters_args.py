"""``dynasync filters``: bad arguments and bad FetchXML files are one line, exit 2, before
Kafka is touched; what a re-import plans (pure)."""

from __future__ import annotations

from pathlib import Path

import pytest

from connectors.dataverse.filters import FilterImportError
from pipeline.config_store import ConfigSnapshot
from pipeline.filter_import import plan_import
from schemas.models import FilterRecord, FilterSource, Mailbox, Organisation
from tests.unit.cli.invoke import dynasync

NOWHERE = ("--bootstrap", "127.0.0.1:1", "--timeout", "0.5")
GOOD = (
    '<fetch><entity name="contact"><filter><condition attribute="ownerid" '
    'operator="eq-userid"/></filter></entity></fetch>'
)


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (b"", "not well-formed"),
        (b"<fetch><entity name=", "not well-formed"),
        (b"<view/>", "<fetch>"),
        (b'<fetch><entity name="account"/></fetch>', "not a synced table"),
        (b'<!DOCTYPE x [<!ENTITY a "b">]><fetch/>', "DOCTYPE"),
        (b"\xff\xfe<fetch/>", "UTF-8"),
        (b"x" * 100_001, "larger than"),
        (
            b'<fetch><entity name="contact"><filter><condition attribute="x" '
            b'operator="sounds-like" value="a"/></filter></entity></fetch>',
            "sounds-like",
        ),
    ],
)
def test_bad_fetchxml_files_are_refused(tmp_path: Path, content: bytes, says: str) -> None:
    path = tmp_path / "f.xml"
    path.write_bytes(content)
    ran = dynasync("filters", "import", "--org", "o", "--file", str(path), "--id", "f", *NOWHERE)
    assert ran.code == 2 and len(ran.err_lines) == 1 and says in ran.err, ran


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("import", "--org", "o", "--file", "/nonexistent.xml", "--id", "f"), "cannot read"),
        (("import", "--org", "o", "--file", "/", "--id", "f"), "not a regular file"),
        (("import", "--org", "o", "--file", "GOOD"), "needs --id"),
        (("import", "--org", "o", "--file", "GOOD", "--id", "userquery:1"), "kept for"),
        (
            (
                "import",
                "--org",
                "o",
                "--file",
                "GOOD",
                "--id",
                "a",
                "--mailbox",
                "m",
                "--mailbox",
                "n",
            ),
            "at most one",
        ),
        (("import", "--org", "o", "--id", "a"), "go with --file"),
        (("import", "--org", "bad org"), "bad org"),
        (("set", "f"), "nothing to set"),
        (("set", "f", "--file", "/nonexistent.xml"), "cannot read"),
        (("show",), "ID"),
        (("remove", "a b"), "a b"),
    ],
)
def test_bad_arguments_are_one_line_and_exit_2(
    tmp_path: Path, args: tuple[str, ...], says: str
) -> None:
    good = tmp_path / "good.xml"
    good.write_text(GOOD)
    argv = [str(good) if a == "GOOD" else a for a in args]
    ran = dynasync("filters", *argv, *NOWHERE)
    assert ran.code == 2 and len(ran.err_lines) == 1 and says in ran.err, ran
    assert ran.out == ""


def _filter(filter_id: str, mailbox: str | None, name: str = "n", xml: str = GOOD) -> FilterRecord:
    source: FilterSource = "userquery" if filter_id.startswith("userquery:") else "template"
    return FilterRecord(
        filter_id=filter_id,
        org_id="o",
        table="contact",
        name=name,
        fetchxml=xml,
        source=source,
        mailbox_id=mailbox,
    )


def _snapshot(*held: FilterRecord) -> ConfigSnapshot:
    snap = ConfigSnapshot()
    snap.apply(Organisation(org_id="o", url="https://o.example"))
    for m in ("a", "b"):
        snap.apply(
            Mailbox(
                mailbox_id=m,
                org_id="o",
                upn=f"{m}@o.example",
                systemuser_id=f"00000000-0000-4000-8000-00000000000{len(m)}",
            )
        )
    for record in held:
        snap.apply(record)
    return snap


def test_reimport_plans_updates_removals_and_keeps_what_it_does_not_own() -> None:
    kept = _filter("userquery:1", "a")
    renamed = _filter("userquery:2", "a", name="new name")
    gone = _filter("userquery:3", "a")
    other_mailbox = _filter("userquery:4", "b")
    custom = _filter("mine", "a")
    broken_now = _filter("userquery:5", "a")
    template_gone = _filter("savedquery:9", None)
    snap = _snapshot(
        kept, _filter("userquery:2", "a"), gone, other_mailbox, custom, broken_now, template_gone
    )
    unsupported = _filter(
        "userquery:6",
        "a",
        xml='<fetch><entity name="contact"><order attribute="x"/><foo/></entity></fetch>',
    )
    report = plan_import(
        snap,
        [kept, renamed, _filter("userquery:7", "a"), unsupported],
        [FilterImportError("userquery", "5", "b", "not well-formed")],
        org_id="o",
        mailboxes=["a"],
        templates=False,
        prune=True,
    )
    assert [f.filter_id for f in report.unchanged] == ["userquery:1"]
    assert [f.filter_id for f in report.updated] == ["userquery:2"]
    assert [f.filter_id for f in report.added] == ["userquery:7"]
    assert [f.filter_id for f in report.removed] == ["userquery:3"]
    assert {e.row_id for e in report.errors} == {"5", "6"}
    again = plan_import(snap, [], [], org_id="o", mailboxes=["a"], templates=True, prune=False)
    assert not again.removed and not again.added
    with_templates = plan_import(snap, [], [], org_id="o", mailboxes=[], templates=True, prune=True)
    assert [f.filter_id for f in with_templates.removed] == ["savedquery:9"]
