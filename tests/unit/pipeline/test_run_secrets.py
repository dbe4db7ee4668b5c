"""``dynasync run`` takes its tokens from the environment or from a file only its owner can
read, never from the command line."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.cli.main import load_settings, main
from pipeline.cli.run import run_overrides

SECRET = "tok-5f1e0c9a7d"


def _token_file(tmp_path: Path, mode: int, text: str = SECRET + "\n") -> Path:
    path = tmp_path / "graph.token"
    path.write_text(text)
    path.chmod(mode)
    return path


def _one_line(err: str) -> str:
    lines = err.splitlines()
    assert len(lines) == 1, err
    return lines[0]


def test_a_token_file_readable_by_others_is_refused_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _token_file(tmp_path, 0o644)
    assert main(["run", "--graph-token-file", str(path)]) == 2
    captured = capsys.readouterr()
    line = _one_line(captured.err)
    assert line == (
        f"dynasync: the Graph token file {path} is mode 0644, readable by others; "
        f"it must be 0600 or stricter (chmod 600 {path})"
    )
    assert SECRET not in captured.out + captured.err


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660])
def test_any_group_or_other_bit_is_refused(tmp_path: Path, mode: int) -> None:
    path = _token_file(tmp_path, mode)
    assert main(["run", "--dataverse-token-file", str(path)]) == 2


@pytest.mark.parametrize("mode", [0o600, 0o400])
def test_an_owner_only_token_file_is_read(tmp_path: Path, mode: int) -> None:
    path = _token_file(tmp_path, mode)
    overrides = run_overrides(graph_token_file=str(path), dataverse_token_file=str(path))
    settings = load_settings(overrides)
    assert settings.graph.static_token is not None
    assert settings.graph.static_token.get_secret_value() == SECRET
    assert settings.dataverse.static_token is not None
    assert settings.dataverse.static_token.get_secret_value() == SECRET


@pytest.mark.parametrize(
    ("text", "why"),
    [("", "must hold one token"), ("two\nlines\n", "must hold one token")],
)
def test_a_token_file_without_one_token_is_refused(
    tmp_path: Path, text: str, why: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _token_file(tmp_path, 0o600, text)
    assert main(["run", "--graph-token-file", str(path)]) == 2
    assert why in _one_line(capsys.readouterr().err)


def test_a_missing_token_file_is_one_clear_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "nope.token"
    assert main(["run", "--graph-token-file", str(path)]) == 2
    assert _one_line(capsys.readouterr().err) == (
        f"dynasync: cannot read the Graph token file {path}: No such file or directory"
    )


@pytest.mark.parametrize(
    ("flag", "env"),
    [
        ("--graph-token", "DYNASYNC_GRAPH__STATIC_TOKEN"),
        ("--dataverse-token", "DYNASYNC_DATAVERSE__STATIC_TOKEN"),
    ],
)
def test_a_token_on_the_command_line_is_refused(
    flag: str, env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", flag, SECRET]) == 2
    captured = capsys.readouterr()
    line = _one_line(captured.err)
    assert f"{flag} is refused" in line
    assert env in line
    assert f"{flag}-file" in line
    assert SECRET not in captured.out + captured.err


def test_tokens_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DYNASYNC_GRAPH__STATIC_TOKEN", SECRET)
    monkeypatch.setenv("DYNASYNC_DATAVERSE__STATIC_TOKEN", SECRET + "-dv")
    settings = load_settings(run_overrides())
    assert settings.graph.static_token is not None
    assert settings.graph.static_token.get_secret_value() == SECRET
    assert settings.dataverse.static_token is not None
    assert settings.dataverse.static_token.get_secret_value() == SECRET + "-dv"
    assert SECRET not in repr(settings)


def test_the_help_offers_no_argv_token(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--help"]) == 0
    text = capsys.readouterr().out
    assert "--graph-token-file" in text
    assert "--graph-token " not in text and "--dataverse-token " not in text
