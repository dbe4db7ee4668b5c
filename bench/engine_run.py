"""The engine stage in-process on the broker: throughput from a backlog, then paced latency."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import orjson
from aiokafka import AIOKafkaProducer

from bench.kafka_io import TimedTail
from bench.workload import ORG, USER, encoded
from pipeline.app import App, build_app
from pipeline.plan import MailboxRules
from pipeline.settings import Settings
from pipeline.stages.engine import StaticRules, engine_stage
from pipeline.topics import COMMANDS_CRM, topic_name


@dataclass
class TimedRules:
    """Static rules that remember when the engine first asked for them (its first change)."""

    rules: StaticRules
    first_at: float | None = field(default=None)

    def rules_for(self, mailbox_id: str) -> MailboxRules | None:
        if self.first_at is None:
            self.first_at = time.perf_counter()
        return self.rules.rules_for(mailbox_id)


def timed_rules(mailboxes: list[str]) -> TimedRules:
    """Rules for every benchmark mailbox, timing the first lookup."""
    return TimedRules(StaticRules({m: MailboxRules(m, ORG, USER) for m in mailboxes}))


@dataclass
class EngineRun:
    """One worker app with the engine stage, and a tail of ``commands.crm``."""

    settings: Settings
    mailboxes: list[str]
    rules: TimedRules
    app: App
    tail: TimedTail

    @classmethod
    def build(cls, settings: Settings, mailboxes: list[str]) -> EngineRun:
        rules = timed_rules(mailboxes)
        app = build_app(settings, [engine_stage(rules)])
        tail = TimedTail(settings.kafka.bootstrap, topic_name(COMMANDS_CRM, settings.kafka))
        return cls(settings, mailboxes, rules, app, tail)

    async def start(self) -> None:
        await self.tail.start()
        await self.app.start()

    async def stop(self) -> None:
        await self.app.stop()
        await self.tail.stop()

    async def throughput(self, expected: int, within_s: float) -> float:
        """Changes/s from the engine's first change to the ``expected``-th command seen."""
        await self.tail.wait_for(expected, within_s)
        assert self.rules.first_at is not None
        return expected / (self.tail.arrived[expected - 1] - self.rules.first_at)

    async def latency(
        self, producer: AIOKafkaProducer, source: str, run: str, rate: int, seconds: float
    ) -> list[float]:
        """Produce ``rate`` changes/s for ``seconds``; per change, seconds from just before
        its send to its command arriving on ``commands.crm``."""
        before = len(self.tail.values)
        total = max(1, round(rate * seconds))
        sent_at: dict[str, float] = {}
        acks: list[asyncio.Future[object]] = []
        start = time.perf_counter()
        for i in range(total):
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            key, value = encoded(run, i, self.mailboxes, "2030-01-01T00:00:00Z")
            sent_at[f"outlook:{run}-{i:08d}:1"] = time.perf_counter()
            acks.append(await producer.send(source, value, key=key))
        await asyncio.gather(*acks)
        await self.tail.wait_for(before + total, within_s=60 + seconds)
        latencies = []
        for value, arrived in zip(
            self.tail.values[before:], self.tail.arrived[before:], strict=True
        ):
            caused_by = orjson.loads(value)["caused_by"]
            latencies.append(arrived - sent_at[caused_by])
        return latencies
