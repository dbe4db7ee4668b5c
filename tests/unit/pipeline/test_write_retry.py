"""The writer's retry policy: offline and throttling wait without limit, other errors give up."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from connectors.base import outcome_for
from connectors.errors import BadRequestError, ThrottledError, TransientError
from connectors.memory import MemorySide, MemorySink
from pipeline.app import WindowSize
from pipeline.stages.retry import (
    GaveUpError,
    WritePolicy,
    apply_batch,
    apply_with_retries,
    transient,
)
from schemas.models import WriteCommand, WriteOutcome

COMMAND = WriteCommand(
    command_id="cmd-1",
    correlation_id="corr-1",
    mailbox_id="mbx-1",
    org_id="org-1",
    target="outlook",
    kind="contact",
    action="create",
    fields={"givenName": "Ann"},
    caused_by="chg-1",
    issued_at="2026-11-24T00:00:00Z",
)


class Scripted:
    """A sink that fails with the scripted errors/outcomes first, then applies for real."""

    def __init__(self, script: Sequence[BaseException | str]) -> None:
        self.script = list(script)
        self.side = MemorySide("outlook")
        self.real = MemorySink(self.side)
        self.calls = 0

    async def apply(self, commands: Sequence[WriteCommand]) -> list[WriteOutcome]:
        self.calls += 1
        if self.script:
            step = self.script.pop(0)
            if isinstance(step, BaseException):
                raise step
            return [outcome_for(c, "failed", error_code=step, retriable=True) for c in commands]
        return await self.real.apply(commands)


class Clock:
    def __init__(self) -> None:
        self.slept: list[float] = []

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)


async def test_offline_for_many_attempts_then_applied_once() -> None:
    sink = Scripted([ConnectionRefusedError("refused")] * 40 + [TransientError("503")] * 5)
    clock = Clock()
    policy = WritePolicy(first_s=0.5, cap_s=8.0, max_attempts=3)
    outcome = await apply_with_retries(sink, COMMAND, policy, clock.sleep)
    assert outcome.status == "applied"
    assert sink.calls == 46
    assert len(sink.side.items) == 1
    assert clock.slept[:5] == [0.5, 1.0, 2.0, 4.0, 8.0]
    assert max(clock.slept) == 8.0


async def test_throttling_honours_retry_after_and_retriable_outcomes_are_repeated() -> None:
    sink = Scripted([ThrottledError("429", retry_after=3.0), "throttled", "throttled"])
    clock = Clock()
    outcome = await apply_with_retries(sink, COMMAND, WritePolicy(first_s=0.1), clock.sleep)
    assert outcome.status == "applied"
    assert clock.slept == [3.0, 0.2, 0.4]


async def test_non_transient_errors_give_up_after_max_attempts() -> None:
    sink = Scripted([BadRequestError("bad")] * 10)
    clock = Clock()
    with pytest.raises(GaveUpError, match="failed 3 times: BadRequestError: bad"):
        await apply_with_retries(sink, COMMAND, WritePolicy(max_attempts=3), clock.sleep)
    assert sink.calls == 3
    assert sink.side.items == {}


async def test_a_non_retriable_failed_outcome_is_returned_at_once() -> None:
    class Forbidden(Scripted):
        async def apply(self, commands: Sequence[WriteCommand]) -> list[WriteOutcome]:
            self.calls += 1
            return [outcome_for(c, "forbidden", error_code="403") for c in commands]

    sink = Forbidden([])
    outcome = await apply_with_retries(sink, COMMAND, WritePolicy(), Clock().sleep)
    assert (outcome.status, sink.calls) == ("forbidden", 1)


def test_what_counts_as_transient() -> None:
    assert transient(TransientError("x")) and transient(OSError("down"))
    assert transient(TimeoutError()) and not transient(BadRequestError("x"))
    assert not transient(ValueError("bug"))


@pytest.mark.parametrize(
    ("first_s", "cap_s", "max_attempts"), [(0.0, 1.0, 5), (5.0, 1.0, 5), (0.1, 1.0, 0)]
)
def test_garbage_policy_is_refused(first_s: float, cap_s: float, max_attempts: int) -> None:
    with pytest.raises(ValueError, match="must"):
        WritePolicy(first_s=first_s, cap_s=cap_s, max_attempts=max_attempts)


@pytest.mark.parametrize("events", [0, -1])
def test_garbage_window_sizes_are_refused(events: int) -> None:
    with pytest.raises(ValueError, match="a window needs"):
        WindowSize(events=events)


def _command(n: int) -> WriteCommand:
    return WriteCommand(
        command_id=f"cmd-{n}",
        correlation_id=f"corr-{n}",
        mailbox_id="mbx-1",
        org_id="org-1",
        target="outlook",
        kind="contact",
        action="create",
        fields={"firstname": f"N{n}"},
        caused_by=f"chg-{n}",
        issued_at="2026-11-24T00:00:00Z",
    )


async def test_a_batch_sends_again_only_what_is_not_done() -> None:
    class Half:
        """Throttles the odd commands of the first call, applies the rest."""

        def __init__(self) -> None:
            self.side = MemorySide("outlook")
            self.real = MemorySink(self.side)
            self.calls: list[list[str]] = []

        async def apply(self, commands: Sequence[WriteCommand]) -> list[WriteOutcome]:
            self.calls.append([c.command_id for c in commands])
            if len(self.calls) > 1:
                return await self.real.apply(commands)
            out = []
            for n, cmd in enumerate(commands):
                if n % 2:
                    out.append(outcome_for(cmd, "failed", error_code="429", retriable=True))
                else:
                    (done,) = await self.real.apply([cmd])
                    out.append(done)
            return out

    sink = Half()
    commands = [_command(n) for n in range(4)]
    results = await apply_batch(sink, commands, WritePolicy(), Clock().sleep)
    assert [r.status for r in results if isinstance(r, WriteOutcome)] == ["applied"] * 4
    assert sink.calls == [["cmd-0", "cmd-1", "cmd-2", "cmd-3"], ["cmd-1", "cmd-3"]]
    assert len(sink.side.items) == 4


async def test_one_bad_command_is_parked_alone_the_rest_of_its_batch_applied() -> None:
    class OneBad:
        def __init__(self) -> None:
            self.side = MemorySide("outlook")
            self.real = MemorySink(self.side)

        async def apply(self, commands: Sequence[WriteCommand]) -> list[WriteOutcome]:
            if any(c.command_id == "cmd-1" for c in commands):
                raise BadRequestError("cannot encode cmd-1")
            return await self.real.apply(commands)

    sink = OneBad()
    results = await apply_batch(
        sink, [_command(n) for n in range(3)], WritePolicy(max_attempts=2), Clock().sleep
    )
    assert isinstance(results[1], GaveUpError) and "cmd-1" in str(results[1])
    assert [r.status for r in (results[0], results[2]) if isinstance(r, WriteOutcome)] == [
        "applied",
        "applied",
    ]
    assert len(sink.side.items) == 2
