"""``make up`` (deploy/run/stack.sh) on the real broker: both emulators and a ``dynasync run``
worker with webhooks on in the background; ``dynasync demo`` registers a mailbox and sees a CRM
contact reach Outlook, an Outlook edit reach the CRM (through a Graph notification, within 5 s),
a CRM task reach To Do and a CRM appointment reach the calendar (each within the CRM tables'
idle poll ceiling, 60 s, plus 5 s); ``make down`` stops it all and leaves the broker alone.

The worker's tokens are distinctive values given to ``stack.sh`` in its environment: they must
reach the worker (its environment) and show up nowhere else: not in any stack process's argv,
not in the run directory's files (logs, pids, commands), not in what ``up``/``status`` print.
"""

from __future__ import annotations

import asyncio
import os
import re
import socket
import sys
import uuid
from pathlib import Path

import httpx
import pytest

from pipeline.cli.demo import STEPS
from tests.ports import free_port

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(480)]

ROOT = Path(__file__).resolve().parents[2]
STACK = ROOT / "deploy" / "run" / "stack.sh"
IDLE_BUDGET_S = 5.0
#: A CRM change waits at most for the next poll of its table: 60 s once the table is idle.
CRM_BUDGET_S = 60.0 + IDLE_BUDGET_S
#: The steps that start in Outlook: a Graph notification drives them.
WEBHOOK_STEPS = ("Outlook edit -> CRM contact",)
TOKEN = "demo-e2e"  # the demo's own token (the emulators accept any bearer token)


async def _run(*argv: str, env: dict[str, str], within: float) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        *argv, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await asyncio.wait_for(proc.communicate(), within)
    assert proc.returncode is not None
    return proc.returncode, out.decode(errors="replace")


def _session(pid: str) -> str | None:
    """The session id of process ``pid`` (stack.sh starts each service in its own session)."""
    try:
        stat = (Path("/proc") / pid / "stat").read_text()
    except OSError:
        return None
    return stat.rpartition(")")[2].split()[3]


def _stack_processes(run_dir: Path) -> dict[str, bytes]:
    """argv (NUL-separated) of every process the stack started, and of their children."""
    leaders = {p.read_text().strip() for p in run_dir.glob("*.pid")}
    argv: dict[str, bytes] = {}
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit() and (proc.name in leaders or _session(proc.name) in leaders):
            try:
                argv[proc.name] = (proc / "cmdline").read_bytes()
            except OSError:
                continue  # exited meanwhile
    return argv


def _files_holding(root: Path, secret: bytes) -> list[str]:
    return [str(p) for p in root.rglob("*") if p.is_file() and secret in p.read_bytes()]


async def test_make_up_syncs_a_mailbox_and_make_down_stops_it(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    broker = kafka_bootstrap.split(",")[0]
    graph_port, dataverse_port, receiver_port = free_port(), free_port(), free_port()
    run = uuid.uuid4().hex[:10]
    graph_secret, dataverse_secret = f"gs-{uuid.uuid4().hex}", f"ds-{uuid.uuid4().hex}"
    env = {
        **os.environ,
        "KAFKA_PORT": broker.rpartition(":")[2],
        "GRAPH_PORT": str(graph_port),
        "DATAVERSE_PORT": str(dataverse_port),
        "RECEIVER_PORT": str(receiver_port),
        "STACK_RUN_DIR": str(tmp_path / "stack"),
        "STACK_PYTHON": sys.executable,
        "DYNASYNC_APP_ID": f"dynasync-stack-{run}",
        "DYNASYNC_KAFKA__TOPIC_PREFIX": f"stack.{run}.",
        "DYNASYNC_KAFKA__PARTITIONS": "2",
        "DYNASYNC_DATA_DIR": str(tmp_path / "data"),
        "DYNASYNC_GRAPH__STATIC_TOKEN": graph_secret,
        "DYNASYNC_DATAVERSE__STATIC_TOKEN": dataverse_secret,
    }
    run_dir = tmp_path / "stack"
    code, out = await _run("bash", str(STACK), "up", env=env, within=150)
    try:
        assert code == 0, out
        assert "up. logs and pids in" in out
        code, demo = await _run(
            *(sys.executable, "-m", "pipeline.cli", "demo", "--bootstrap", broker),
            *("--graph-url", f"http://127.0.0.1:{graph_port}"),
            *("--dataverse-url", f"http://127.0.0.1:{dataverse_port}/"),
            *("--users", "1", "--timeout", "90"),
            env={**env, "DYNASYNC_DEMO_TOKEN": TOKEN},  # never in argv
            within=400,
        )
        assert code == 0, demo
        for step in STEPS:
            took = re.search(rf"\] \S+ +{re.escape(step)} +(\d+\.\d\d) s ", demo)
            assert took, f"{step} not narrated:\n{demo}"
            budget = IDLE_BUDGET_S if step in WEBHOOK_STEPS else CRM_BUDGET_S
            assert float(took.group(1)) <= budget, f"{step}: {took.group(1)} s\n{demo}"
        async with httpx.AsyncClient(timeout=10) as http:
            stats = (await http.get(f"http://127.0.0.1:{graph_port}/_emulator/stats")).json()
        # 3 resources (mail, contacts, calendar) for the demo mailbox and for its takeover one
        assert stats["subscriptions"] == 6 and stats["notifications_delivered"] > 0, stats
        status, shown = await _run("bash", str(STACK), "status", env=env, within=30)
        assert status == 0, shown
        worker = (run_dir / "worker.pid").read_text().strip()
        environ = (Path("/proc") / worker / "environ").read_bytes()
        for secret in (graph_secret, dataverse_secret):
            assert secret.encode() in environ  # the worker got it, through its environment
            assert secret not in out and secret not in shown
            processes = _stack_processes(run_dir)
            assert worker in processes and len(processes) >= 3  # graph, dataverse, worker
            assert [pid for pid, argv in processes.items() if secret.encode() in argv] == []
            assert _files_holding(tmp_path, secret.encode()) == []
        worker_log = (run_dir / "worker.log").read_text(errors="replace")
        assert "HTTP Request:" not in worker_log  # one line per poll is DEBUG only
        assert f"notification-url http://127.0.0.1:{receiver_port}" in out
        assert "webhooks on" in worker_log
    finally:
        down, stopped = await _run("bash", str(STACK), "down", env=env, within=60)
    assert down == 0, stopped
    assert "not started by the stack; left running" in stopped
    status, _ = await _run("bash", str(STACK), "status", env=env, within=30)
    assert status == 3  # nothing of the stack runs any more
    with socket.create_connection((broker.rpartition(":")[0], int(env["KAFKA_PORT"])), 3):
        pass  # and the broker it found is still there


@pytest.mark.parametrize(
    ("var", "value"),
    [
        ("RECEIVER_PORT", "webhooks"),
        ("RECEIVER_PORT", "70000"),
        ("RECEIVER_PORT", "0"),
        ("GRAPH_PORT", "-1"),
        ("DATAVERSE_PORT", "8o82"),
        ("KAFKA_PORT", "99999"),
    ],
)
async def test_make_up_refuses_a_garbage_port_before_starting_anything(
    tmp_path: Path, var: str, value: str
) -> None:
    env = {**os.environ, "STACK_RUN_DIR": str(tmp_path / "stack"), var: value}
    code, out = await _run("bash", str(STACK), "up", env=env, within=30)
    assert code == 1, out
    assert out.strip().splitlines() == [f"stack: invalid {var} '{value}' (want 1-65535)"]
    assert not (tmp_path / "stack").exists()  # nothing started, nothing written


@pytest.mark.parametrize("value", ["three", "0", "17", "-2", "2x"])
async def test_make_up_refuses_a_garbage_worker_count_before_starting_anything(
    tmp_path: Path, value: str
) -> None:
    env = {**os.environ, "STACK_RUN_DIR": str(tmp_path / "stack"), "WORKERS": value}
    code, out = await _run("bash", str(STACK), "up", env=env, within=30)
    assert code == 1, out
    assert out.strip().splitlines() == [f"stack: invalid WORKERS '{value}' (want 1-16)"]
    assert not (tmp_path / "stack").exists()
