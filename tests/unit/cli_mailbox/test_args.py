"""``dynasync org`` / ``dynasync mailbox``: garbage arguments exit 2 with one clear line."""

from __future__ import annotations

import socket

import pytest

from pipeline.cli.main import build_parser, main

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


def _exit_code(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    with pytest.raises(SystemExit) as info:
        main(argv)
    code = info.value.code
    assert isinstance(code, int)
    return code, capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["mailbox", "add", "--upn", "ann", "--systemuser", SU, "--org", "c"], "user principal"),
        (["mailbox", "add", "--upn", "a b@c.com", "--systemuser", SU, "--org", "c"], "principal"),
        (["mailbox", "add", "--upn", "a@c.com", "--systemuser", "nope", "--org", "c"], "GUID"),
        (["mailbox", "add", "--upn", "a@c.com", "--systemuser", SU, "--org", "a b"], "letters"),
        (["mailbox", "add", "--upn", "a@c.com", "--systemuser", SU], "--org"),
        ([*ADD, "--auto-track", "sometimes"], "invalid choice: 'sometimes'"),
        ([*ADD, "--mailbox-id", ""], "letters, digits"),
        ([*ADD, "--timeout", "forever"], "number of seconds"),
        ([*ADD, "--timeout", "0"], "0.5-600 seconds"),
        (["org", "add", "--org", "c", "--url", "ftp://c.example"], "http(s) URL"),
        (["org", "add", "--org", "c", "--url", "https://"], "http(s) URL"),
        (["org", "add", "--org", "c", "--url", "https://c.example/a b"], "without spaces"),
        (["org", "add", "--org", "c", "--url", "https://c.example", "--tenant", "x"], "GUID"),
        (["org", "add", "--org", "c", "--url", "https://c.example", "--name", " "], "1-256"),
        (["mailbox", "show"], "mailbox"),
        (["mailbox", "show", "not/an/id"], "letters"),
        (["mailbox", "frobnicate", "x"], "invalid choice: 'frobnicate'"),
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
        (["mailbox", "untrack-folder", "ann@contoso.com"], "--folder"),
    ],
)
def test_garbage_arguments_exit_2(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, err = _exit_code(argv, capsys)
    assert code == 2
    assert message in err
    assert "Traceback" not in err


def test_bad_setting_exits_2_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["mailbox", "list", "--topic-prefix", "no spaces please"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("dynasync: invalid setting kafka.topic_prefix")
    assert err.count("\n") == 1
    assert main(["mailbox", "list", "--bootstrap", "no-port"]) == 2
    assert "invalid setting kafka.bootstrap" in capsys.readouterr().err


def test_good_arguments_parse() -> None:
    args = build_parser().parse_args(
        [*ADD, "--auto-track", "all", "--systemuser", SU.upper(), "--json"]
    )
    assert (args.upn, args.org, args.auto_track, args.json) == (
        "ann@contoso.com",
        "contoso",
        "all",
        True,
    )
    assert args.systemuser == SU  # normalised to lower case
    assert args.auto_create_contact is False
    assert build_parser().parse_args([*ADD, "--auto-create-contact"]).auto_create_contact
    org = build_parser().parse_args(["org", "add", "--org", "c", "--url", "https://c.example/"])
    assert org.url == "https://c.example" and org.token_prefix == "CRM:"
    braces = build_parser().parse_args([*ADD, "--systemuser", "{" + SU.upper() + "}"])
    assert braces.systemuser == SU
    track = build_parser().parse_args([*TRACK[:-1], f"account:{{{SU.upper()}}}"])
    assert (track.folder, track.regarding) == ("AAMkAGFolder=", ("account", SU))


def test_unreachable_broker_is_one_clear_line(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    assert main(["mailbox", "list", "--bootstrap", f"127.0.0.1:{port}", "--timeout", "2"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"dynasync: cannot use Kafka at 127.0.0.1:{port}")
    assert err.count("\n") == 1
