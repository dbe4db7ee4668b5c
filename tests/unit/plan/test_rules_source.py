"""ConfigRules: mailbox rules from an in-memory config snapshot."""

from __future__ import annotations

from dataclasses import replace

from pipeline.config_store import ConfigSnapshot
from pipeline.rules_source import ConfigDirectory, ConfigRules
from schemas.models import FieldDirections, Mailbox, MailboxStatus, Organisation

USER = "11111111-2222-3333-4444-555555555555"
OTHER = "99999999-2222-3333-4444-555555555555"


def snapshot(status: MailboxStatus = "enabled") -> ConfigSnapshot:
    snap = ConfigSnapshot()
    snap.apply(Organisation(org_id="org", url="https://org.example"))
    snap.apply(Organisation(org_id="org2", url="https://org2.example"))
    mbx = Mailbox(mailbox_id="m1", upn="ann@x.com", org_id="org", systemuser_id=USER)
    snap.apply(replace(mbx, status=status))
    snap.apply(
        FieldDirections(
            org_id="org",
            kind="contact",
            directions={"jobtitle": "to_outlook"},
            conflict_policy="outlook_wins",
        )
    )
    snap.apply(FieldDirections(org_id="org2", kind="contact", directions={"jobtitle": "none"}))
    return snap


def test_enabled_mailbox_gets_its_org_directions_and_defaults() -> None:
    source = ConfigRules.of(snapshot())
    rules = source.rules_for("m1")
    assert rules is not None and rules.systemuser_id == USER and rules.upn == "ann@x.com"
    assert rules.direction("contact", "jobtitle") == "to_outlook"
    assert rules.policy("contact").conflict_policy == "outlook_wins"
    assert rules.policy("task").conflict_policy == "crm_wins"  # default record
    assert rules.direction("task", "subject") == "both"
    assert source.refusal("m1") == ""
    assert source.rules_for("m1") is rules  # cached while the records are unchanged


def test_not_enabled_unknown_and_orphaned_mailboxes_are_refused() -> None:
    statuses: tuple[MailboxStatus, ...] = ("registered", "approved", "paused", "disabled")
    for status in statuses:
        source = ConfigRules.of(snapshot(status))
        assert source.rules_for("m1") is None
        assert f"is {status}, not enabled" in source.refusal("m1")
    source = ConfigRules.of(snapshot())
    assert source.rules_for("nope") is None and "not registered" in source.refusal("nope")
    snap = snapshot()
    source = ConfigRules.of(snap)
    assert source.rules_for("m1") is not None
    snap.remove("organisation:org")
    assert source.rules_for("m1") is None and "does not exist" in source.refusal("m1")


def test_clashing_mailbox_is_refused() -> None:
    snap = snapshot()
    source = ConfigRules.of(snap)
    assert source.rules_for("m1") is not None
    snap.apply(
        Mailbox(
            mailbox_id="m2", upn="ANN@x.com", org_id="org", systemuser_id=OTHER, status="enabled"
        )
    )
    assert source.rules_for("m2") is None
    assert source.refusal("m2").startswith("config clash: UPN")


def test_updates_to_the_snapshot_take_effect() -> None:
    snap = snapshot()
    source = ConfigRules.of(snap)
    assert source.rules_for("m1") is not None
    snap.apply(FieldDirections(org_id="org", kind="contact", directions={"jobtitle": "none"}))
    rules = source.rules_for("m1")
    assert rules is not None and rules.direction("contact", "jobtitle") == "none"
    paused = replace(snap.mailboxes["m1"], status="paused")
    snap.apply(paused)
    assert source.rules_for("m1") is None
    snap.apply(replace(paused, status="enabled"))
    assert source.rules_for("m1") is not None


def test_invalid_directions_refuse_with_reason() -> None:
    snap = snapshot()
    snap.apply(FieldDirections(org_id="org", kind="contact", directions={"bogus": "both"}))
    source = ConfigRules.of(snap)
    assert source.rules_for("m1") is None
    assert "invalid configuration" in source.refusal("m1") and "bogus" in source.refusal("m1")


def test_directory_follows_the_snapshot() -> None:
    from pipeline.rules_source import ConfigDirectory
    from schemas.models import FilterRecord

    snap = ConfigSnapshot()
    snap.apply(Organisation(org_id="o1", url="https://o1.crm.dynamics.com"))
    snap.apply(Organisation(org_id="o2", url="https://o2.crm.dynamics.com"))
    a = Mailbox(mailbox_id="a", upn="a@o1.com", org_id="o1", systemuser_id=USER)
    b = Mailbox(mailbox_id="b", upn="b@o2.com", org_id="o2", systemuser_id=OTHER)
    snap.apply(a)
    snap.apply(b)
    template = FilterRecord(
        filter_id="t", org_id="o1", table="contact", name="all", fetchxml="<fetch/>"
    )
    own = FilterRecord(
        filter_id="f",
        org_id="o1",
        table="contact",
        name="mine",
        fetchxml="<fetch/>",
        mailbox_id="a",
    )
    other_table = replace(own, filter_id="g", table="task")
    for f in (template, own, other_table):
        snap.apply(f)
    directory = ConfigDirectory(lambda: snap)
    assert directory.mailboxes_for("o1") == [a]
    assert {f.filter_id for f in directory.filters_for("a", "contact")} == {"t", "f"}
    assert directory.filters_for("b", "contact") == []
    assert directory.filters_for("nobody", "contact") == []
    snap.remove("filter:f")
    assert {f.filter_id for f in directory.filters_for("a", "contact")} == {"t"}


def _org_of(n: int) -> ConfigSnapshot:
    snap = ConfigSnapshot()
    snap.apply(Organisation(org_id="o1", url="https://o1.crm.dynamics.com"))
    for i in range(n):
        snap.apply(
            Mailbox(
                mailbox_id=f"m{i}",
                upn=f"m{i}@o1.com",
                org_id="o1",
                systemuser_id=f"{i:08d}-2222-3333-4444-555555555555",
            )
        )
    return snap


def test_the_directory_view_is_built_once_per_snapshot_revision() -> None:
    """Routing a change asks for the organisation's mailboxes and each one's filters: with
    200 mailboxes and 50 changes, ``routable`` is asked 200 times (one build), not 50×200²."""
    snap = _org_of(200)
    asked: list[str] = []

    def routable(mailbox_id: str) -> bool:
        asked.append(mailbox_id)
        return True

    directory = ConfigDirectory(lambda: snap, routable)
    for _ in range(50):
        for m in directory.mailboxes_for("o1"):
            assert directory.filters_for(m.mailbox_id, "contact") == []
    assert len(asked) == 200
    snap.apply(replace(snap.mailboxes["m0"], upn="renamed@o1.com"))  # same snapshot, new revision
    assert directory.mailboxes_for("o1")[0].upn == "renamed@o1.com"
    assert len(asked) == 400


def test_a_mailbox_not_routable_yet_joins_after_the_recheck() -> None:
    snap = _org_of(3)
    now = [0.0]
    ready = {"m0", "m1"}
    directory = ConfigDirectory(
        lambda: snap, lambda m: m in ready, recheck_s=0.5, clock=lambda: now[0]
    )
    assert [m.mailbox_id for m in directory.mailboxes_for("o1")] == ["m0", "m1"]
    ready.add("m2")
    now[0] = 0.4
    assert len(directory.mailboxes_for("o1")) == 2  # the view is still fresh
    now[0] = 0.6
    assert [m.mailbox_id for m in directory.mailboxes_for("o1")] == ["m0", "m1", "m2"]
