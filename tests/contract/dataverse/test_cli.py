"""The command line: validation errors, and a real process serving requests."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import aiohttp
import pytest

from emulators.dataverse.__main__ import parse_args
from tests.ports import free_port


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--port", "0"], "port must be an integer 1-65535"),
        (["--port", "http"], "port must be an integer 1-65535"),
        (["--throttle-scale", "0"], "throttle scale must be > 0"),
        (["--throttle-scale", "nan"], "throttle scale must be > 0"),
        (["--throttle-scale", "fast"], "throttle scale must be a number"),
        (["--expiry-days", "0"], "expiry days must be an integer 1-365"),
        (["--expiry-days", "1000"], "expiry days must be an integer 1-365"),
        (["--base-url", "ftp://x/y"], "base_url must look like"),
        (["--host", " "], "--host must not be empty"),
        (["--bogus"], "unrecognized arguments"),
    ],
)
def test_bad_cli_args_exit_2_with_message(
    args: list[str], fragment: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        parse_args(args)
    assert exc.value.code == 2
    assert fragment in capsys.readouterr().err


def test_cli_args_build_config() -> None:
    host, port, config = parse_args(
        ["--port", "9000", "--throttle-scale", "0.5", "--expiry-days", "3", "--no-throttle"]
    )
    assert (host, port) == ("127.0.0.1", 9000)
    assert config.throttle.requests_per_window == 3000
    assert config.throttle.max_concurrent == 26
    assert config.expiry_days == 3
    assert config.throttle_enabled is False


async def test_module_runs_and_serves() -> None:
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "emulators.dataverse",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        async with aiohttp.ClientSession() as session:
            for _ in range(100):
                try:
                    async with session.get(
                        f"http://127.0.0.1:{port}/api/data/v9.2/contacts",
                        headers={"Authorization": "Bearer t"},
                    ) as resp:
                        assert resp.status == 200
                        body = await resp.json(content_type=None)
                        assert body["value"] == []
                        assert body["@odata.context"] == (
                            f"http://127.0.0.1:{port}/api/data/v9.2/$metadata#contacts"
                        )
                        break
                except aiohttp.ClientConnectionError:
                    await asyncio.sleep(0.1)
            else:
                pytest.fail("the emulator did not start")
    finally:
        proc.terminate()
        await asyncio.wait_for(proc.wait(), timeout=10)


def test_module_rejects_bad_args_in_a_real_process() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "emulators.dataverse", "--port", "99999"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert "port must be an integer 1-65535" in result.stderr
