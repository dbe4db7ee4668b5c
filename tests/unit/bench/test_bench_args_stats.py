"""The benchmark's percentile maths and option validation (no broker)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.args import BenchArgsError, BenchParams, parse, validate
from bench.report import results, summary
from bench.stats import latency_summary, percentile, rate


def test_percentile_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]  # 1..100
    assert percentile(values, 50) == 50
    assert percentile(values, 95) == 95
    assert percentile(values, 99) == 99
    assert percentile(values, 100) == 100
    assert percentile(values, 0) == 1
    assert percentile([3.0, 1.0, 2.0], 50) == 2


def test_percentile_rejects_garbage() -> None:
    with pytest.raises(ValueError, match="no values"):
        percentile([], 50)
    with pytest.raises(ValueError, match=r"0\.\.100"):
        percentile([1.0], 101)
    with pytest.raises(ValueError, match=r"0\.\.100"):
        percentile([1.0], float("nan"))


def test_latency_summary_in_ms_and_rate() -> None:
    summary_ms = latency_summary([0.001] * 98 + [0.5, 2.0])
    assert summary_ms == {"p50": 1.0, "p95": 1.0, "p99": 500.0, "max": 2000.0}
    assert rate(500, 0.25) == 2000.0
    with pytest.raises(ValueError, match="positive"):
        rate(1, 0)


def test_defaults_parse() -> None:
    params = parse([])
    assert params == BenchParams()
    assert parse(["--changes", "500", "--rate", "50"]).changes == 500


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--changes", "5"], "--changes must be between"),
        (["--mailboxes", "0"], "--mailboxes must be between"),
        (["--rate", "-1"], "--rate must be between"),
        (["--seconds", "0"], "--seconds must be between"),
        (["--rate", "2", "--seconds", "1"], "at least 10 changes"),
        (["--bootstrap", "not a host"], "--bootstrap must be host:port"),
        (["--out", "results.txt"], "--out must be a .json file"),
        (["--kafka-version", "4; rm -rf /"], "--kafka-version is malformed"),
        (["--changes", "many"], "invalid int value"),
    ],
)
def test_garbage_options_fail_clearly(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        parse(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_validate_raises_typed_error() -> None:
    with pytest.raises(BenchArgsError, match="--partitions"):
        validate(BenchParams(partitions=0))


def test_results_document_and_summary() -> None:
    params = BenchParams(out=Path("x.json"), kafka_version="4.3.1")
    doc = results(params, 20_000.0, 12_000.0, {"p50": 1.0, "p95": 2.0, "p99": 1500.0}, {})
    assert doc["ratio"] == 0.6
    assert doc["met"] == {"engine_changes_per_s": True, "p99_ms": False}
    slow = results(params, 20_000.0, 6000.0, {"p50": 1.0, "p95": 2.0, "p99": 1.0}, {})
    assert slow["met"] == {"engine_changes_per_s": False, "p99_ms": True}
    assert doc["params"]["out"] == "x.json" and doc["kafka_version"] == "4.3.1"
    assert "NOT met" in summary(doc)
