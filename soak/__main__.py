"""``python -m soak [--minutes N | --smoke] [...]``: run the soak, print its summary, write its
JSON, exit 1 if a check failed (2 for a bad command line)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import os
import random
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from soak.run import Options, soak, summary, write

SMOKE_MINUTES = 3.0


def _number(low: float, high: float) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
        if not math.isfinite(value) or not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be {low:g}-{high:g}, got {text!r}")
        return value

    return parse


def parse_args(argv: Sequence[str] | None = None, env: dict[str, str] | None = None) -> Options:
    """Validate the command line (and SOAK_MINUTES); exits 2 with one message if invalid."""
    env = dict(os.environ) if env is None else env
    parser = argparse.ArgumentParser(prog="python -m soak", description=__doc__)
    parser.add_argument(
        "--minutes",
        type=_number(1, 1440),
        help="how long the edits and the chaos last (default SOAK_MINUTES or 30)",
    )
    parser.add_argument(
        "--smoke", action="store_true", help=f"a short run: {SMOKE_MINUTES:g} minutes"
    )
    parser.add_argument("--mailboxes", type=int, default=20)
    parser.add_argument("--seed", type=int, default=None, help="repeat a run (printed)")
    parser.add_argument("--outage-s", type=_number(1, 600), default=60.0)
    parser.add_argument("--kill-min-s", type=_number(1, 3600), default=6.0)
    parser.add_argument("--kill-max-s", type=_number(1, 3600), default=24.0)
    parser.add_argument("--ops-per-s", type=_number(0.01, 100), default=2.0, help="per side")
    parser.add_argument(
        "--contacts-per-mailbox", type=int, default=30, help="creates stop there (30)"
    )
    parser.add_argument("--settle-s", type=_number(10, 3600), default=300.0)
    parser.add_argument("--max-log-kib-per-min", type=_number(1, 1e6), default=256.0)
    parser.add_argument("--max-rss-growth", type=_number(1, 100), default=1.3)
    parser.add_argument("--out", type=Path, default=Path(".run/soak/latest.json"))
    args = parser.parse_args(argv)
    if args.smoke and args.minutes is not None:
        parser.error("--smoke and --minutes exclude each other")
    minutes = args.minutes
    if minutes is None:
        raw = env.get("SOAK_MINUTES", "") or "30"
        try:
            minutes = _number(1, 1440)(raw)
        except argparse.ArgumentTypeError as exc:
            parser.error(f"SOAK_MINUTES {exc}")
    if args.smoke:
        minutes = SMOKE_MINUTES
    if not 1 <= args.mailboxes <= 200:
        parser.error(f"--mailboxes must be 1-200, got {args.mailboxes}")
    if not 1 <= args.contacts_per_mailbox <= 1000:
        parser.error(f"--contacts-per-mailbox must be 1-1000, got {args.contacts_per_mailbox}")
    if args.kill_min_s > args.kill_max_s:
        parser.error("--kill-min-s must not exceed --kill-max-s")
    return Options(
        minutes=minutes,
        mailboxes=args.mailboxes,
        seed=args.seed if args.seed is not None else random.randrange(1 << 30),
        outage_s=args.outage_s,
        kill_min_s=args.kill_min_s,
        kill_max_s=args.kill_max_s,
        ops_per_s=args.ops_per_s,
        contacts_per_mailbox=args.contacts_per_mailbox,
        settle_s=args.settle_s,
        max_rss_growth=args.max_rss_growth,
        max_log_kib_per_min=args.max_log_kib_per_min,
        out=args.out,
    )


def main(argv: Sequence[str] | None = None) -> int:
    opts = parse_args(argv)
    # the soak's own Kafka clients complain while a broker node is down: expected, not news
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    result = asyncio.run(soak(opts))
    write(result, opts.out)
    print(summary(result))
    print(f"figures: {opts.out}")
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
