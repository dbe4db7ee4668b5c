"""``dynasync demo`` as a child process against in-process emulators and a ``dynasync run``
child process on the real broker: the demo registers its mailboxes after the pipeline started
(so the pipeline must pick them up), narrates every step, and a second run reuses them."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from emulators.dataverse import EmulatorConfig as DataverseConfig
from emulators.dataverse import create_app as create_dataverse
from emulators.graph.app import create_app as create_graph
from emulators.graph.config import EmulatorConfig as GraphConfig
from pipeline.cli.demo import EXTRA_STEPS, STEPS
from pipeline.cli.run import READY_LINE
from pipeline.cli.topics import ensure_topics
from pipeline.settings import KafkaSettings
from tests.e2e.world import serve

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(300)]
TOKEN = "demo-e2e"


@dataclass(frozen=True)
class Stack:
    env: dict[str, str]
    bootstrap: str
    graph: str
    dataverse: str


def _text(log: Path) -> str:
    return log.read_text(errors="replace")


async def _wait_for_line(log: Path, proc: asyncio.subprocess.Process, within: float) -> None:
    deadline = time.monotonic() + within
    while READY_LINE not in _text(log):
        if proc.returncode is not None or time.monotonic() > deadline:
            raise AssertionError(f"pipeline not ready: {_text(log)[-3000:]}")
        await asyncio.sleep(0.1)


@pytest.fixture
async def stack(kafka_bootstrap: str, tmp_path: Path) -> AsyncIterator[Stack]:
    """Both emulators, fresh topics, and ``dynasync run`` over them (no mailbox yet)."""
    graph = await serve(create_graph(GraphConfig()))
    dataverse = await serve(create_dataverse(DataverseConfig()))
    run = uuid.uuid4().hex[:10]
    prefix = f"demo.{run}."
    await ensure_topics(KafkaSettings(bootstrap=kafka_bootstrap, topic_prefix=prefix, partitions=2))
    env = {
        **os.environ,
        "DYNASYNC_APP_ID": f"dynasync-demo-{run}",
        "DYNASYNC_KAFKA__TOPIC_PREFIX": prefix,
        "DYNASYNC_KAFKA__PARTITIONS": "2",
        "DYNASYNC_DATA_DIR": str(tmp_path / "data"),
        "DYNASYNC_DEMO_TOKEN": TOKEN,  # the demo's token, never in argv
    }
    worker_env = {
        **env,
        "DYNASYNC_GRAPH__STATIC_TOKEN": TOKEN,
        "DYNASYNC_DATAVERSE__STATIC_TOKEN": TOKEN,
    }
    graph_url = f"http://127.0.0.1:{graph.port}"
    log = tmp_path / "run.log"
    with log.open("ab") as out:
        proc = await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "pipeline.cli", "run", "--bootstrap", kafka_bootstrap),
            *("--graph-url", f"{graph_url}/v1.0", "--crm-poll", "0.3", "--outlook-poll", "0.3"),
            *("--crm-poll-max", "0.3", "--outlook-poll-max", "0.3"),  # no idle backoff here
            *("--config-refresh", "1"),
            env=worker_env,
            stdout=out,
            stderr=out,
            start_new_session=True,
        )
    try:
        await _wait_for_line(log, proc, 60)
        yield Stack(env, kafka_bootstrap, graph_url, f"http://127.0.0.1:{dataverse.port}")
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 20)
            except TimeoutError:
                os.killpg(proc.pid, signal.SIGKILL)
                await proc.wait()
        await graph.close()
        await dataverse.close()


async def _demo(s: Stack, *extra: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "pipeline.cli", "demo", "--bootstrap", s.bootstrap),
        *("--graph-url", s.graph, "--dataverse-url", f"{s.dataverse}/"),
        *extra,
        env=s.env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 130)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_demo_narrates_every_step_and_runs_twice(stack: Stack) -> None:
    code, out, err = await _demo(stack, "--users", "2", "--timeout", "20")
    assert code == 0, out + err
    upns = ("ann.demo@contoso.test", "bob.demo@contoso.test")
    assert "organisation org-demo registered" in out
    for upn in upns:
        assert f"mailbox {upn} registered" in out
        assert f"{upn}: the pipeline reads its mailbox" in out
        for step in STEPS:
            narrated = re.search(rf"\] {re.escape(upn)} +{re.escape(step)} +(\d+\.\d\d) s ", out)
            assert narrated, f"{upn} / {step} not narrated:\n{out}"
            assert float(narrated.group(1)) < 20
            assert re.search(rf"^{re.escape(upn)} +{re.escape(step)} +\d+\.\d\d$", out, re.M)
    _assert_extra_steps(out)
    assert "all 12 steps seen" in out

    code, out, err = await _demo(stack, "--users", "2", "--timeout", "20")
    assert code == 0, out + err
    assert "organisation org-demo (" in out and "already registered" in out
    for upn in upns:
        assert f"mailbox {upn} already registered and enabled" in out
    _assert_extra_steps(out)
    assert re.search(r"takeover: the last run's takeover mailbox take\w+\.demo@contoso.test", out)
    assert "all 12 steps seen" in out


def _assert_extra_steps(out: str) -> None:
    """The tracked email, conflict, resync and takeover lines, each with its seconds."""
    seen: dict[str, str] = {}
    for step in EXTRA_STEPS:
        line = re.search(rf"\] (\S+) +{re.escape(step)} +(\d+\.\d\d) s  (.*)$", out, re.M)
        assert line, f"{step} not narrated:\n{out}"
        assert float(line.group(2)) < 130
        seen[step] = line.group(3)
    assert "in category 'Tracked to Dynamics 365': 1 email activity" in seen[EXTRA_STEPS[0]]
    conflict = re.search(
        r"jobtitle CRM '(Head of Sales \w+)' vs Outlook 'Sales Lead \w+': "
        r"policy crm_wins, crm wins; both sides '([^']+)'",
        seen[EXTRA_STEPS[1]],
    )
    assert conflict and conflict.group(1) == conflict.group(2), seen[EXTRA_STEPS[1]]
    assert re.search(r"\d+ linked, \d+ sent and handled; counts unchanged", seen[EXTRA_STEPS[2]])
    assert re.search(
        r"resync linked 3 pairs, enabled, a CRM edit reached its linked copy; "
        r"3 contacts in Outlook, 3 in the CRM, one copy each",
        seen[EXTRA_STEPS[3]],
    )


async def test_demo_garbage_arguments_exit_2() -> None:
    for garbage, message in (
        (("--timeout", "-1"), "'--timeout': expected seconds within (0, 3600]"),
        (("--graph-url", "graph"), "'--graph-url': expected an http(s) URL like"),
        (("--token", "s3cret-in-argv"), "--token is refused"),
    ):
        proc = await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "pipeline.cli", "demo", *garbage),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), 30)
        assert proc.returncode == 2
        assert message in err.decode()
        assert b"s3cret" not in err  # a refused token is not echoed
        assert out == b""
