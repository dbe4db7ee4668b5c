"""``python -m emulators.graph --host 127.0.0.1 --port 8081 [...]``."""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable, Sequence

from aiohttp import web

from .app import create_app
from .config import EmulatorConfig, ThrottleLimits


def _port(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"port must be an integer 1-65535, got {text!r}")
    return int(text)


def _positive(what: str) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{what} must be a number, got {text!r}") from None
        if not value > 0 or not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"{what} must be > 0, got {text!r}")
        return value

    return parse


def parse_args(argv: Sequence[str] | None = None) -> tuple[str, int, EmulatorConfig]:
    """Parse and validate the command line (exits with status 2 and a message if invalid)."""
    parser = argparse.ArgumentParser(
        prog="python -m emulators.graph", description="Microsoft Graph v1.0 emulator"
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=_port, default=8081)
    parser.add_argument("--base-url", default=None, help="origin for absolute links")
    parser.add_argument("--throttle-scale", type=_positive("throttle scale"), default=1.0)
    parser.add_argument("--no-throttle", action="store_true")
    parser.add_argument("--notify-time-scale", type=_positive("notify time scale"), default=1.0)
    parser.add_argument("--token", action="append", default=[], help="accepted bearer token")
    args = parser.parse_args(argv)
    if not args.host.strip():
        parser.error("--host must not be empty")
    try:
        config = EmulatorConfig(
            base_url=args.base_url,
            throttle=ThrottleLimits().scaled(args.throttle_scale),
            throttle_enabled=not args.no_throttle,
            notify_time_scale=args.notify_time_scale,
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
