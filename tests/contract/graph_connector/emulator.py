"""Runs the Graph emulator as its own process (``python -m emulators.graph``) on an ephemeral
port, and talks to its control API and to Graph as a mailbox's user would."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx

from tests.ports import free_port

TOKEN = "contract-test-token"


@dataclass
class GraphEmulator:
    """A running emulator process."""

    url: str
    process: subprocess.Popen[bytes]

    @property
    def base(self) -> str:
        return f"{self.url}/v1.0"

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {TOKEN}"}

    async def control(self, path: str, body: Any = None) -> Any:
        async with httpx.AsyncClient() as http:
            resp = await http.post(f"{self.url}/_emulator/{path}", json=body or {})
            resp.raise_for_status()
            return resp.json() if resp.content else None

    async def stats(self) -> Any:
        async with httpx.AsyncClient() as http:
            resp = await http.get(f"{self.url}/_emulator/stats")
            resp.raise_for_status()
            return resp.json()

    async def call(self, method: str, path: str, body: Any = None, **kw: Any) -> httpx.Response:
        """A request as the mailbox's own user (Outlook), outside the connector."""
        async with httpx.AsyncClient() as http:
            for _ in range(20):
                resp = await http.request(
                    method,
                    f"{self.base}/{path.lstrip('/')}",
                    json=body,
                    headers=self.headers(),
                    **kw,
                )
                if resp.status_code != 429:
                    return resp
                await asyncio.sleep(float(resp.headers.get("Retry-After", "1")))
            return resp

    async def new_mailbox(self) -> str:
        name = f"user{uuid.uuid4().hex[:8]}"
        resp = await self.call(
            "POST",
            "users",
            {
                "userPrincipalName": f"{name}@contoso.test",
                "mail": f"{name}@contoso.test",
                "displayName": name,
            },
        )
        assert resp.status_code in (200, 201), resp.text
        mailbox = resp.json()["id"]
        assert isinstance(mailbox, str)
        return mailbox


def start_emulator(*extra: str) -> Iterator[GraphEmulator]:
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "emulators.graph",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            *extra,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            err = proc.stderr.read().decode() if proc.stderr else ""
            raise RuntimeError(f"Graph emulator exited: {err[-2000:]}")
        try:
            httpx.get(f"{url}/_emulator/stats", timeout=0.5)
            break
        except httpx.HTTPError:
            time.sleep(0.1)
    else:
        proc.kill()
        raise RuntimeError("Graph emulator did not start within 20 s")
    try:
        yield GraphEmulator(url, proc)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
