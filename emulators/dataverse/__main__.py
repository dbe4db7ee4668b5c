"""``python -m emulators.dataverse --host 127.0.0.1 --port 8082 [...]``."""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence

from aiohttp import web

from .app import create_app
from .config import EmulatorConfig, ThrottleLimits


def _port(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"port must be an integer 1-65535, got {text!r}")
    return int(text)


def _scale(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"throttle scale must be a number, got {text!r}") from None
    if not value > 0 or not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"throttle scale must be > 0, got {text!r}")
    return value


def _days(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 365:
        raise argparse.ArgumentTypeError(f"expiry days must be an integer 1-365, got {text!r}")
    return int(text)


def parse_args(argv: Sequence[str] | None = None) -> tuple[str, int, EmulatorConfig]:
    """Parse and validate the command line (exits with status 2 and a message if invalid)."""
    parser = argparse.ArgumentParser(
        prog="python -m emulators.dataverse", description="Dataverse Web API v9.2 emulator"
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=_port, default=8082)
    parser.add_argument("--base-url", default=None, help="origin for absolute links")
    parser.add_argument("--throttle-scale", type=_scale, default=1.0)
    parser.add_argument("--no-throttle", action="store_true")
    parser.add_argument("--expiry-days", type=_days, default=7)
    parser.add_argument("--token", action="append", default=[], help="accepted bearer token")
    args = parser.parse_args(argv)
    if not args.host.strip():
        parser.error("--host must not be empty")
    try:
        config = EmulatorConfig(
            base_url=args.base_url,
            throttle=ThrottleLimits().scaled(args.throttle_scale),
            throttle_enabled=not args.no_throttle,
            expiry_days=args.expiry_days,
            accepted_tokens=frozenset(args.token),
        )
    except ValueError as exc:
        parser.error(str(exc))
    return args.host, args.port, config


def main(argv: Sequence[str] | None = None) -> None:
    """Run the emulator until interrupted."""
    host, port, config = parse_args(argv)
    web.run_app(
        create_app(config), host=host, port=port, print=lambda msg: print(msg, file=sys.stderr)
    )


if __name__ == "__main__":
    main()
