"""The adaptive wait of polling readers: floor while changes flow, doubling (less jitter) to an
exact ceiling while idle, back to the floor on a change or a reset; garbage is refused."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from itertools import cycle

import pytest

from connectors.pacing import Pacer, idle


def fixed(value: float) -> Callable[[], float]:
    return lambda: value


def test_idle_passes_double_the_wait_up_to_an_exact_ceiling() -> None:
    pacer = Pacer(1.0, 60.0, rand=fixed(0.0))
    waits = [pacer.next_wait(False) for _ in range(9)]
    assert waits == [2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0, 60.0, 60.0]
    assert pacer.level_s == 60.0


def test_a_pass_with_changes_goes_back_to_the_floor_and_grows_again() -> None:
    pacer = Pacer(0.5, 8.0, rand=fixed(0.0))
    for _ in range(10):
        pacer.next_wait(False)
    assert pacer.next_wait(True) == 0.5
    assert pacer.next_wait(True) == 0.5
    assert [pacer.next_wait(False) for _ in range(5)] == [1.0, 2.0, 4.0, 8.0, 8.0]


def test_reset_brings_the_next_idle_wait_back_near_the_floor() -> None:
    pacer = Pacer(1.0, 60.0, rand=fixed(0.0))
    for _ in range(10):
        pacer.next_wait(False)
    pacer.reset()
    assert pacer.level_s == 1.0
    assert pacer.next_wait(False) == 2.0


def test_jitter_only_shortens_waits_below_the_ceiling_never_the_ceiling() -> None:
    pacer = Pacer(1.0, 10.0, jitter=0.1, rand=fixed(0.999999))
    waits = [pacer.next_wait(False) for _ in range(6)]
    assert waits[:3] == pytest.approx([1.8, 3.6, 7.2], rel=1e-4)
    assert waits[3:] == [10.0, 10.0, 10.0]  # idle cost bounded: one pass per ceiling
    for w, level in zip(waits[:3], (2.0, 4.0, 8.0), strict=True):
        assert 0.9 * level <= w < level


def test_jitter_never_goes_below_the_floor() -> None:
    pacer = Pacer(1.0, 1.5, jitter=0.9, rand=fixed(0.999999))
    assert pacer.next_wait(False) == 1.5  # at the ceiling: exact
    pacer = Pacer(1.0, 5.0, jitter=0.9, rand=fixed(0.999999))
    assert pacer.next_wait(False) == 1.0  # 2.0 less 90 % would be 0.2


def test_without_a_ceiling_the_wait_is_fixed() -> None:
    pacer = Pacer(3.0)
    assert [pacer.next_wait(c) for c in (False, False, True, False)] == [3.0] * 4


def test_idle_cost_over_a_window_is_bounded_by_the_ceiling() -> None:
    """Simulated time: passes of an idle reader over an hour after its backoff."""
    rand = cycle([0.0, 0.3, 0.7, 0.99])
    pacer = Pacer(1.0, 60.0, rand=lambda: next(rand))
    now, passes = 0.0, []
    while now < 3 * 60 + 3600:
        passes.append(now)
        now += pacer.next_wait(False)
    in_window = [t for t in passes if t >= 3 * 60]
    assert len(in_window) <= 60 + 1  # at most one a minute


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: Pacer(0.0), "floor_s"),
        (lambda: Pacer(-1.0), "floor_s"),
        (lambda: Pacer(math.nan), "floor_s"),
        (lambda: Pacer(math.inf), "floor_s"),
        (lambda: Pacer(2.0, 1.0), "ceiling_s"),
        (lambda: Pacer(1.0, math.inf), "ceiling_s"),
        (lambda: Pacer(1.0, math.nan), "ceiling_s"),
        (lambda: Pacer(1.0, 2.0, factor=1.0), "factor"),
        (lambda: Pacer(1.0, 2.0, factor=math.nan), "factor"),
        (lambda: Pacer(1.0, 2.0, jitter=1.0), "jitter"),
        (lambda: Pacer(1.0, 2.0, jitter=-0.1), "jitter"),
        (lambda: Pacer(1.0, 2.0, jitter=math.nan), "jitter"),
    ],
)
def test_garbage_is_refused(make: Callable[[], Pacer], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make()


async def test_idle_waits_out_its_time_unless_woken() -> None:
    loop = asyncio.get_running_loop()
    wake = asyncio.Event()
    started = loop.time()
    assert await idle(0.05, wake) is False
    assert loop.time() - started >= 0.04

    loop.call_later(0.02, wake.set)
    started = loop.time()
    assert await idle(30.0, wake) is True
    assert loop.time() - started < 5.0
    assert not wake.is_set()  # consumed: the next wait is a full one

    wake.set()  # woken before it began: returns at once
    assert await idle(30.0, wake) is True
