"""``dynasync demo``: its arguments are validated (exit 2 with a clear line), unreachable
emulators are named (exit 1), and the pure helpers (URLs, users, summary) hold."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from pipeline.cli import demo
from pipeline.cli.demo import STEPS, StepResult, emulator_url, summary, timeout_seconds
from pipeline.cli.demo_world import MAX_USERS, demo_users
from pipeline.cli.main import main


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--timeout", "soon"], "expected seconds, got 'soon'"),
        (["--timeout", "0"], "expected seconds within (0, 3600]"),
        (["--timeout", "nan"], "expected seconds within (0, 3600]"),
        (["--timeout", "-5"], "expected seconds within (0, 3600]"),
        (["--timeout", "99999"], "expected seconds within (0, 3600]"),
        (["--graph-url", "ftp://x"], "expected an http(s) URL like"),
        (["--graph-url", "localhost:8081"], "expected an http(s) URL like"),
        (["--dataverse-url", "http://"], "expected an http(s) URL like"),
        (["--dataverse-url", "http://h:99999"], "expected an http(s) URL, got"),
        (["--dataverse-url", "http://h/ x"], "expected a plain http(s) URL"),
        (["--graph-url", "http://h/?a=1"], "expected a plain http(s) URL"),
        (["--users", "0"], f"expected 1 to {MAX_USERS} users"),
        (["--users", "many"], "expected a whole number"),
        (["--token", "s3cret"], "--token is refused: a secret on the command line shows in ps"),
        (["--token-file", "/nonexistent/token"], "cannot read the token file"),
        (["--colour"], "No such option '--colour'"),
    ],
)
def test_garbage_arguments_exit_2_with_a_clear_error(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["demo", *args]) == 2
    err = capsys.readouterr().err
    assert message in err
    assert len(err.splitlines()) == 1
    assert "s3cret" not in err


@pytest.mark.parametrize("token", ["a b", "", "x" * 5000])
def test_a_garbage_token_in_the_environment_exits_2(
    token: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(demo.TOKEN_ENV, token)
    assert main(["demo"]) == 2
    err = capsys.readouterr().err
    assert f"{demo.TOKEN_ENV}: a token needs 1-4096 visible characters" in err


def test_a_token_file_readable_by_others_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "token"
    path.write_text("tok\n")
    path.chmod(0o644)
    assert main(["demo", "--token-file", str(path)]) == 2
    assert "readable by others" in capsys.readouterr().err


def test_max_users_is_the_worlds() -> None:
    assert demo.MAX_USERS == MAX_USERS


def test_garbage_bootstrap_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--bootstrap", "not a host list"]) == 2
    assert "invalid setting kafka.bootstrap" in capsys.readouterr().err


def test_unreachable_emulator_is_named_and_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as sock:  # a port nothing listens on once closed
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    code = main(
        ["demo", "--graph-url", f"http://127.0.0.1:{port}", "--dataverse-url", "http://x.invalid"]
    )
    assert code == 1
    err = capsys.readouterr().err
    assert f"the Graph emulator does not answer at http://127.0.0.1:{port}" in err
    assert "make up" in err


@pytest.mark.parametrize(
    ("text", "url"),
    [
        ("http://127.0.0.1:8081", "http://127.0.0.1:8081"),
        ("http://127.0.0.1:8081/", "http://127.0.0.1:8081"),
        ("http://127.0.0.1:8081/v1.0", "http://127.0.0.1:8081"),
        ("https://emu.test/api/data/v9.2/", "https://emu.test"),
        ("http://[::1]:8082", "http://[::1]:8082"),
    ],
)
def test_emulator_urls_are_normalised(text: str, url: str) -> None:
    assert emulator_url(text) == url


def test_timeout_accepts_fractions() -> None:
    assert timeout_seconds("2.5") == 2.5
    with pytest.raises(ValueError, match="within"):
        timeout_seconds("inf")


def test_demo_users_have_distinct_fixed_identities() -> None:
    users = demo_users(MAX_USERS)
    assert users == demo_users(MAX_USERS)
    assert len({u.upn for u in users}) == len({u.systemuser_id for u in users}) == MAX_USERS
    assert all(u.mailbox_id == "" for u in users)  # the Graph emulator assigns it
    with pytest.raises(ValueError, match="between 1 and"):
        demo_users(MAX_USERS + 1)


def test_summary_lists_every_step_in_order_and_marks_the_missed() -> None:
    results = [
        StepResult("b@x.test", STEPS[1], None, "not seen"),
        StepResult("b@x.test", STEPS[0], 1.234),
        StepResult("a@x.test", STEPS[3], 0.5),
    ]
    lines = summary(results)
    assert lines[0].split() == ["mailbox", "step", "seconds"]
    rows = lines[2:]
    assert rows[0].startswith("a@x.test") and rows[0].endswith("0.50")
    assert STEPS[0] in rows[1] and rows[1].endswith("1.23")
    assert STEPS[1] in rows[2] and rows[2].endswith("NOT SEEN")
