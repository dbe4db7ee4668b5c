"""Ask a Kafka cluster for its metadata once; exit 0 when enough brokers answer.

Usage: probe.py BOOTSTRAP [MIN_BROKERS] [TIMEOUT_SECONDS]

Exit status: 0 ready, 1 not (yet) ready, 2 bad arguments. Used by kafka.sh to
wait for a freshly started broker.
"""

from __future__ import annotations

import asyncio
import logging
import sys

from aiokafka import AIOKafkaClient


async def count_brokers(bootstrap: str, request_timeout_ms: int) -> int:
    """Return how many brokers the cluster's metadata lists."""
    client = AIOKafkaClient(bootstrap_servers=bootstrap, request_timeout_ms=request_timeout_ms)
    try:
        async with asyncio.timeout(request_timeout_ms / 1000):
            await client.bootstrap()
            metadata = await client.fetch_all_metadata()
        return len(metadata.brokers())
    finally:
        await client.close()


def parse_args(argv: list[str]) -> tuple[str, int, float]:
    """Validate the command line: bootstrap servers, broker count, timeout."""
    if not 1 <= len(argv) <= 3 or not argv[0].strip():
        raise ValueError("usage: probe.py BOOTSTRAP [MIN_BROKERS] [TIMEOUT_SECONDS]")
    brokers = int(argv[1]) if len(argv) > 1 else 1
    timeout = float(argv[2]) if len(argv) > 2 else 5.0
    if brokers < 1 or not 0 < timeout <= 300:
        raise ValueError("MIN_BROKERS must be >= 1 and TIMEOUT_SECONDS in (0, 300]")
    return argv[0], brokers, timeout


def main(argv: list[str]) -> int:
    """Run one probe and map the outcome to an exit status."""
    try:
        bootstrap, wanted, timeout = parse_args(argv)
    except ValueError as err:
        print(f"probe.py: {err}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.CRITICAL)
    try:
        seen = asyncio.run(count_brokers(bootstrap, int(timeout * 1000)))
    except Exception:
        return 1
    return 0 if seen >= wanted else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
