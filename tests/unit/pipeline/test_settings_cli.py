"""Settings and the dynasync command line: good values load, garbage is refused clearly."""

from __future__ import annotations

import pytest
from pydantic import SecretStr, ValidationError

from pipeline.cli.main import UsageError, load_settings, main
from pipeline.cli.run import runtime_options
from pipeline.settings import KafkaSettings, Settings
from pipeline.topics import ALL_TOPICS, CONFIG, CURSORS, topic_name


def test_settings_read_nested_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DYNASYNC_KAFKA__BOOTSTRAP", "10.0.0.1:9092,10.0.0.2:9092")
    monkeypatch.setenv("DYNASYNC_KAFKA__PARTITIONS", "12")
    monkeypatch.setenv("DYNASYNC_GRAPH__CLIENT_SECRET", "s3cret")
    settings = Settings()
    assert settings.kafka.bootstrap == "10.0.0.1:9092,10.0.0.2:9092"
    assert settings.kafka.partitions == 12
    assert isinstance(settings.graph.client_secret, SecretStr)
    assert "s3cret" not in repr(settings)
    assert "s3cret" not in str(settings.model_dump())


def test_settings_are_frozen() -> None:
    settings = Settings()
    with pytest.raises(ValidationError):
        setattr(settings, "app_id", "other")  # noqa: B010  (mypy would refuse the plain form)


@pytest.mark.parametrize(
    ("env", "value"),
    [
        ("DYNASYNC_KAFKA__PARTITIONS", "zero"),
        ("DYNASYNC_KAFKA__PARTITIONS", "0"),
        ("DYNASYNC_KAFKA__BOOTSTRAP", "no port here"),
        ("DYNASYNC_STORE", "postgres"),
        ("DYNASYNC_GRAPH__BASE_URL", "ftp://graph"),
        ("DYNASYNC_RECEIVER__PORT", "70000"),
        ("DYNASYNC_KAFKA__SESSION_TIMEOUT_S", "1"),  # the broker refuses below 6 s
        ("DYNASYNC_KAFKA__SESSION_TIMEOUT_S", "soon"),
    ],
)
def test_garbage_env_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, env: str, value: str
) -> None:
    monkeypatch.setenv(env, value)
    with pytest.raises(UsageError) as info:
        load_settings()
    assert str(info.value).startswith("invalid setting ")


def test_unknown_setting_is_refused() -> None:
    with pytest.raises(ValidationError):
        KafkaSettings.model_validate({"bootstrap": "h:1", "surprise": True})


def test_cli_overrides_are_validated() -> None:
    settings = load_settings({"kafka": {"bootstrap": "h:1", "partitions": 3}})
    assert (settings.kafka.bootstrap, settings.kafka.partitions) == ("h:1", 3)
    with pytest.raises(UsageError):
        load_settings({"kafka": {"bootstrap": "h"}})


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["nonsense"],
        ["topics"],
        ["topics", "create", "--partitions", "-1"],
        ["topics", "create", "--partitions", "many"],
        ["topics", "list", "--replication-factor", "0"],
        ["worker", "--stage", "teleport"],
        ["worker", "--stage", "echo:only-source"],
        ["demo-echo", "--messages", "0"],
        ["run", "--crm-poll-max", "0"],
        ["run", "--crm-poll-max", "soon"],
        ["run", "--outlook-poll-max", "-3"],
        ["run", "--outlook-poll-max", "nan"],
        ["run", "--safety-net", "100000"],
        ["run", "--safety-net", "inf"],
        ["run", "--log-level", "LOUD"],
        ["receiver", "--port", "0"],
        ["receiver", "--port", "webhooks"],
        ["receiver", "--port", "70000"],
        ["receiver", "--log-level", "LOUD"],
    ],
)
def test_cli_garbage_exits_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    if argv in ([], ["topics"]):  # a group without its command prints its help
        assert err.startswith("Usage: dynasync")
    else:
        assert err.startswith("dynasync") and len(err.splitlines()) == 1, err


def test_receiver_without_a_client_state_key_exits_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The receiver checks clientState with the workers' key: with no key and no Graph
    credential to derive it from, one line and exit 2 (nothing is started)."""
    for var in (
        "DYNASYNC_GRAPH__CLIENT_STATE_KEY",
        "DYNASYNC_GRAPH__CLIENT_SECRET",
        "DYNASYNC_GRAPH__STATIC_TOKEN",
    ):
        monkeypatch.delenv(var, raising=False)
    assert main(["receiver", "--bootstrap", "127.0.0.1:1", "--port", "8199"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "clientState key" in err[0], err


def test_cli_bad_bootstrap_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["topics", "create", "--bootstrap", "bad host"]) == 2
    assert "invalid setting kafka.bootstrap" in capsys.readouterr().err


def test_topics_list_prints_the_catalogue(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["topics", "list"]) == 0
    out = capsys.readouterr().out
    for spec in ALL_TOPICS:
        assert spec.name in out


def test_catalogue_keys_and_compaction() -> None:
    names = [s.name for s in ALL_TOPICS]
    assert len(names) == len(set(names))
    assert CONFIG.compacted and CURSORS.compacted
    assert CONFIG.config()["cleanup.policy"] == "compact"
    mailbox_topics = [s for s in ALL_TOPICS if s.key == "mailbox_id"]
    assert {s.name for s in mailbox_topics} >= {"changes.outlook", "changes.crm", "events.v1"}
    for spec in ALL_TOPICS:
        if not spec.compacted:
            assert int(spec.config()["retention.ms"]) > 0
    prefixed = topic_name(CONFIG, KafkaSettings(topic_prefix="acme."))
    assert prefixed == "acme.config"


def test_run_poll_options_default_and_parse() -> None:
    options = runtime_options()
    assert (options.crm_poll_s, options.crm_poll_max_s) == (1.0, 60.0)
    assert (options.outlook_poll_s, options.outlook_poll_max_s) == (1.0, None)
    assert options.safety_net_s == 900.0
    options = runtime_options(crm_poll_max=30, outlook_poll_max=90, safety_net=3600)
    assert (options.crm_poll_max_s, options.outlook_poll_max_s) == (30.0, 90.0)
    assert options.safety_net_s == 3600.0


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--crm-poll", "10", "--crm-poll-max", "5"], "crm_poll_max_s must be >= crm_poll_s"),
        (["--outlook-poll", "20", "--outlook-poll-max", "2"], "outlook_poll_max_s must be >="),
    ],
)
def test_run_refuses_a_ceiling_below_its_floor_in_one_line(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", *argv]) == 2  # before anything connects
    err = capsys.readouterr().err
    assert err.startswith("dynasync: invalid poll options: ") and message in err
    assert err.count("\n") == 1
