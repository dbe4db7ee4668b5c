"""``dynasync mailbox import``: the CSV file is checked whole before anything connects (each
bad row named with its line, exit 2, nothing written), and the rows are checked against the
registered mailboxes and each other in one pass."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.cli.mailbox import new_mailbox
from pipeline.cli.mailbox_import import MAX_BYTES, Row, RowErrors, plan, read_csv
from pipeline.config_store import ConfigSnapshot
from schemas.models import Organisation
from tests.unit.cli.invoke import dynasync

SU = "11111111-2222-3333-4444-{:012d}"


def _csv(tmp_path: Path, text: str | bytes, name: str = "boxes.csv") -> str:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return str(path)


def test_good_rows_become_mailboxes(tmp_path: Path) -> None:
    path = _csv(
        tmp_path,
        "\ufeffUPN,SystemUser,org,smtp,auto_track,auto_create_contact,mailbox_id\n"
        f"Ann@Contoso.com,{{{SU.format(1).upper()}}},contoso,ann.x@contoso.com,all,yes,\n"
        "\n"
        f"bob@contoso.com,{SU.format(2)},,,,,0f8fad5b-d9cb-469f-a165-70867728950E\n",
    )
    rows = read_csv(path, org="fabrikam", enable=True)
    assert [r.line for r in rows] == [2, 4]
    ann, bob = (r.record for r in rows)
    assert (ann.mailbox_id, ann.upn, ann.org_id) == (
        "ann@contoso.com",
        "Ann@Contoso.com",
        "contoso",
    )
    assert ann.systemuser_id == SU.format(1) and ann.smtp_address == "ann.x@contoso.com"
    assert (ann.auto_track, ann.auto_create_contact, ann.status) == ("all", True, "enabled")
    assert bob.org_id == "fabrikam"  # --org for the row without one
    assert bob.mailbox_id == bob.aad_object_id == "0f8fad5b-d9cb-469f-a165-70867728950e"
    assert (bob.auto_track, bob.auto_create_contact) == ("replies", False)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "has no header row"),
        ("upn,systemuser,org\n", "has no rows"),
        ("upn,systemuser,colour\n", "unknown column(s) 'colour'"),
        ("upn,upn,systemuser,org\n", "a column appears twice"),
        ("upn,org\n", "missing column(s) systemuser"),
        ("upn,systemuser\n", "missing column(s) org (or give --org)"),
        (b"upn,systemuser,org\n\xff\xfe\n", "is not UTF-8 text"),
        (b"upn,systemuser,org\n\x00\n", "holds NUL bytes"),
    ],
)
def test_a_bad_file_is_one_clear_error(tmp_path: Path, text: str | bytes, message: str) -> None:
    path = _csv(tmp_path, text)
    ran = dynasync("mailbox", "import", "--csv", path, "--bootstrap", "127.0.0.1:1")
    assert ran.code == 2, ran
    assert len(ran.err_lines) == 1 and message in ran.err, ran.err
    assert ran.out == ""


def test_a_file_too_large_is_refused(tmp_path: Path) -> None:
    path = _csv(tmp_path, b"upn,systemuser,org\n" + b"x" * MAX_BYTES)
    ran = dynasync("mailbox", "import", "--csv", path)
    assert ran.code == 2 and "is larger than" in ran.err


def test_every_bad_row_is_named_and_nothing_connects(tmp_path: Path) -> None:
    path = _csv(
        tmp_path,
        "upn,systemuser,org,auto_track,auto_create_contact\n"
        f"ann@contoso.com,{SU.format(1)},contoso,,\n"
        f"not-an-address,{SU.format(2)},contoso,,\n"
        "cho@contoso.com,nope,contoso,,\n"
        f"dan@contoso.com,{SU.format(4)},con toso,,\n"
        f"eve@contoso.com,{SU.format(5)},contoso,sometimes,\n"
        f"fay@contoso.com,{SU.format(6)},contoso,,perhaps\n"
        f"gil@contoso.com,{SU.format(7)}\n"
        ",,contoso,,\n",
    )
    ran = dynasync("mailbox", "import", "--csv", path, "--bootstrap", "127.0.0.1:1")
    assert ran.code == 2
    assert "cannot use Kafka" not in ran.err
    lines = ran.err_lines
    assert lines[-1] == f"dynasync: 7 bad row(s) in {path}; nothing was written"
    expected = [
        "line 3: upn: expected a user principal name",
        "line 4: systemuser: expected a GUID",
        "line 5: org: expected 1-512 characters",
        "line 6: auto_track: expected one of all, replies",
        "line 7: auto_create_contact: expected true or false, got 'perhaps'",
        "line 8: 2 fields, the header has 5",
        "line 9: upn, systemuser: empty",
    ]
    assert len(lines) == len(expected) + 1
    for line, want in zip(lines, expected, strict=False):
        assert line.startswith(f"dynasync mailbox import: {path} {want}"), line
    assert ran.out == ""


def _org(org_id: str, url: str) -> Organisation:
    return Organisation(org_id=org_id, url=url)


def _row(line: int, upn: str, su: int, org: str = "contoso", smtp: str | None = None) -> Row:
    return Row(line, new_mailbox(upn=upn, systemuser=SU.format(su), org_id=org, smtp=smtp))


def test_plan_checks_rows_against_the_registered_and_each_other() -> None:
    snapshot = ConfigSnapshot()
    snapshot.apply(_org("contoso", "https://contoso.crm.dynamics.com"))
    snapshot.apply(_org("alias", "https://CONTOSO.crm.dynamics.com/"))  # the same CRM
    snapshot.apply(new_mailbox(upn="ann@contoso.com", systemuser=SU.format(1), org_id="contoso"))
    rows = [
        _row(2, "bob@contoso.com", 2),
        _row(3, "cho@contoso.com", 1),  # ann's CRM user
        _row(4, "dan@contoso.com", 2, org="alias"),  # bob's CRM user, through the alias org
        _row(5, "bob@contoso.com", 5),  # bob again
        _row(6, "eve@contoso.com", 6, smtp="BOB@contoso.com"),  # bob's address
        _row(7, "fay@contoso.com", 7, org="nowhere"),
        _row(8, "ANN@contoso.com", 1),  # registered already
    ]
    with pytest.raises(RowErrors) as info:
        plan(snapshot, rows, skip_existing=False)
    errors = info.value.errors
    assert len(errors) == 6, errors
    assert errors[0].startswith("line 3: mailbox cho@contoso.com: CRM user ")
    assert "ann@contoso.com" in errors[0]
    assert errors[1].startswith("line 4: mailbox dan@contoso.com: CRM user ")
    assert errors[2] == "line 5: mailbox bob@contoso.com: also on line 2"
    assert errors[3].startswith("line 6: mailbox eve@contoso.com: SMTP address BOB@contoso.com")
    assert errors[4] == "line 7: mailbox fay@contoso.com: organisation 'nowhere' does not exist"
    assert errors[5] == "line 8: mailbox ann@contoso.com is registered already"


def test_plan_skips_what_is_registered_already_when_asked() -> None:
    snapshot = ConfigSnapshot()
    snapshot.apply(_org("contoso", "https://contoso.crm.dynamics.com"))
    snapshot.apply(new_mailbox(upn="ann@contoso.com", systemuser=SU.format(1), org_id="contoso"))
    done = plan(
        snapshot, [_row(2, "ANN@contoso.com", 1), _row(3, "bob@contoso.com", 2)], skip_existing=True
    )
    assert [r.line for r in done.unchanged] == [2]
    assert [r.record.mailbox_id for r in done.write] == ["bob@contoso.com"]
    with pytest.raises(RowErrors, match="bad row") as info:  # another CRM user: not the same
        plan(snapshot, [_row(2, "ann@contoso.com", 9)], skip_existing=True)
    assert info.value.errors == [
        (
            "line 2: mailbox ann@contoso.com is registered already with another UPN, "
            "organisation or CRM user"
        )
    ]


def test_plan_of_thousands_is_one_pass() -> None:
    snapshot = ConfigSnapshot()
    snapshot.apply(_org("contoso", "https://contoso.crm.dynamics.com"))
    rows = [_row(n + 2, f"user{n}@contoso.com", n) for n in range(5000)]
    assert len(plan(snapshot, rows, skip_existing=False).write) == 5000
