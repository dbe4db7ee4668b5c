"""``dynasync org`` / ``dynasync mailbox``: garbage arguments exit 2 with one clear line on
stderr, before anything connects (the broker address given is one nothing listens on)."""

from __future__ import annotations

import socket

import pytest

from tests.unit.cli.invoke import dynasync

SU = "11111111-2222-3333-4444-555555555555"
ADD = ["mailbox", "add", "--upn", "ann@contoso.com", "--systemuser", SU, "--org", "contoso"]
TRACK = [
    "mailbox",
    "track-folder",
    "ann@contoso.com",
    "--folder",
    "AAMkAGFolder=",
    "--regarding",
    f"account:{SU}",
]
NOWHERE = ["--bootstrap", "127.0.0.1:1"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["mailbox", "add", "--upn", "ann", "--systemuser", SU, "--org", "c"], "user principal"),
        (["mailbox", "add", "--upn", "a b@c.com", "--systemuser", SU, "--org", "c"], "principal"),
        (["mailbox", "add", "--upn", "a@c.com", "--systemuser", "nope", "--org", "c"], "GUID"),
        (["mailbox", "add", "--upn", "a@c.com", "--systemuser", SU, "--org", "a b"], "letters"),
        (["mailbox", "add", "--upn", "a@c.com", "--systemuser", SU], "Missing option '--org'"),
        ([*ADD, "--auto-track", "sometimes"], "'sometimes' is not one of"),
        ([*ADD, "--mailbox-id", ""], "letters, digits"),
        ([*ADD, "--timeout", "forever"], "expected seconds, got 'forever'"),
        ([*ADD, "--timeout", "0"], "expected seconds within [0.5, 600]"),
        ([*ADD, "--topic-prefix", "no spaces"], "'--topic-prefix'"),
        (["org", "add", "--org", "c", "--url", "ftp://c.example"], "http(s) URL"),
        (["org", "add", "--org", "c", "--url", "https://"], "http(s) URL"),
        (["org", "add", "--org", "c", "--url", "https://c.example:99999"], "http(s) URL"),
        (["org", "add", "--org", "c", "--url", "https://c.example/a b"], "without spaces"),
        (["org", "add", "--org", "c", "--url", "https://c.example", "--tenant", "x"], "GUID"),
        (["org", "add", "--org", "c", "--url", "https://c.example", "--name", " "], "1-256"),
        (["org", "edit", "c"], "nothing to change"),
        (["org", "edit", "c", "--url", "mailto:x@y.z"], "http(s) URL"),
        (["org", "remove"], "Missing argument 'ORG'"),
        (["org", "remove", "a/b"], "letters"),
        (["org", "frobnicate"], "No such command 'frobnicate'"),
        (["mailbox", "show"], "Missing argument 'MAILBOX'"),
        (["mailbox", "show", "not/an/id"], "letters"),
        (["mailbox", "frobnicate", "x"], "No such command 'frobnicate'"),
        (["mailbox", "approve", "a b"], "letters"),
        (["mailbox", "enable"], "Missing argument 'MAILBOX'"),
        (["mailbox", "disable", "x", "--json", "extra"], "unexpected extra argument"),
        (["mailbox", "remove", "../x"], "letters"),
        (["mailbox", "status", "x y"], "letters"),
        (["mailbox", "resume", "x y"], "letters"),
        (["mailbox", "import"], "Missing option '--csv'"),
        (["mailbox", "import", "--csv", "/nonexistent.csv"], "cannot read /nonexistent.csv"),
        (["mailbox", "import", "--csv", "/"], "/ is not a regular file"),
        (["dlq", "list", "--reason", "DROP TABLE"], "expected a reason"),
        (["dlq", "replay", "--mailbox", "a b"], "letters"),
        (["dlq", "replay", "--dry-run=yes"], "does not take a value"),
        (["topics", "create", "--partitions", "0"], "expected a number within 1-"),
        (["topics", "list", "--topic-prefix", "a b"], "'--topic-prefix'"),
        (["mailbox", "edit", "ann@contoso.com"], "nothing to change"),
        (["mailbox", "edit", "ann@contoso.com", "--upn", "nope"], "user principal"),
        (["mailbox", "edit", "ann@contoso.com", "--systemuser", "nope"], "GUID"),
        (["mailbox", "edit", "ann@contoso.com", "--auto-track", "x"], "'x' is not one of"),
        ([*ADD, "--smtp", "not an address"], "user principal name"),
        ([*ADD, "--systemuser", "{nope}"], "GUID"),
        ([*ADD, "--systemuser", "{" + SU], "GUID"),
        ([*ADD, "--mailbox-id", "users/../x"], "letters, digits"),
        (
            ["org", "add", "--org", "c", "--url", "https://c.example", "--token-prefix", "CRM 1"],
            "prefix",
        ),
        (
            ["org", "add", "--org", "c", "--url", "https://c.example", "--token-prefix", "CRM1"],
            "digit",
        ),
        (
            ["org", "add", "--org", "c", "--url", "https://c.example", "--token-prefix", ""],
            "prefix",
        ),
        ([*TRACK, "--folder", "inbox/../x"], "mail folder id"),
        ([*TRACK, "--folder", ""], "mail folder id"),
        ([*TRACK, "--regarding", "account"], "TABLE:GUID"),
        ([*TRACK, "--regarding", "Account:" + SU], "TABLE:GUID"),
        ([*TRACK, "--regarding", "account:nope"], "GUID"),
        (["mailbox", "track-folder", "ann@contoso.com", "--folder", "AAMkF"], "--regarding"),
        (["mailbox", "untrack-folder", "ann@contoso.com"], "Missing option '--folder'"),
    ],
)
def test_garbage_arguments_exit_2_in_one_line(argv: list[str], message: str) -> None:
    ran = dynasync(*argv, *NOWHERE)
    assert ran.code == 2, ran
    assert len(ran.err_lines) == 1, ran.err
    assert message in ran.err
    assert ran.err.startswith("dynasync")
    assert "Traceback" not in ran.err and "cannot use Kafka" not in ran.err
    assert ran.out == ""


def test_bad_setting_exits_2_with_one_line() -> None:
    ran = dynasync("mailbox", "list", "--bootstrap", "no-port")
    assert ran.code == 2
    assert ran.err_lines == [ran.err_lines[0]]
    assert ran.err.startswith("dynasync: invalid setting kafka.bootstrap")
    ran = dynasync("mailbox", "list", env={"DYNASYNC_KAFKA__PARTITIONS": "zero"})
    assert ran.code == 2 and "invalid setting kafka.partitions" in ran.err


def test_unreachable_broker_is_one_clear_line() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    ran = dynasync("mailbox", "list", "--bootstrap", f"127.0.0.1:{port}", "--timeout", "2")
    assert ran.code == 1
    assert ran.err.startswith(f"dynasync: Kafka: cannot reach 127.0.0.1:{port}")
    assert len(ran.err_lines) == 1
