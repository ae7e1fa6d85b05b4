"""The connection ramp's decisions, from measured bytes over time (no network, no clock)."""

from __future__ import annotations

from sdhub.sources.ramp import ConnectionRamp

MB = 1_000_000


def run(ramp: ConnectionRamp, per_connection: float, *, total_limit: float = float("inf"),
        seconds: float = 2.0, step: float = 0.01) -> list[int]:
    """Feed the ramp a server giving each connection ``per_connection`` bytes/s (at most ``total_limit``
    in all); returns the connection count after each addition."""
    counts, received, now = [ramp.active], 0.0, 0.0
    while now < seconds:
        now += step
        received += min(per_connection * ramp.active, total_limit) * step
        if ramp.observe(now, int(received), all_receiving=True):
            counts.append(ramp.active)
    return counts


def test_connections_throttled_one_by_one_grow_to_the_cap() -> None:
    ramp = ConnectionRamp(cap=8)
    assert run(ramp, 16 * MB) == [1, 4, 8]
    assert ramp.settled


def test_a_cap_of_sixteen_is_reached_in_three_steps() -> None:
    assert run(ConnectionRamp(cap=16), 16 * MB) == [1, 4, 16]


def test_adding_stops_when_throughput_stops_growing() -> None:
    # The server's link carries 40 MB/s in all: four connections help, sixteen do not, so no more are tried.
    ramp = ConnectionRamp(cap=32)
    assert run(ramp, 16 * MB, total_limit=40 * MB) == [1, 4, 16]
    assert ramp.settled and [count for count, _ in ramp.rates] == [1, 4, 16]


def test_a_step_that_gains_too_little_is_the_last() -> None:
    # 24 MB/s in all: four connections bring 1.5x where at least 1.9x (30% of each one's share) was due.
    ramp = ConnectionRamp(cap=8)
    assert run(ramp, 16 * MB, total_limit=24 * MB) == [1, 4]
    assert ramp.settled


def test_one_fast_connection_gets_no_company() -> None:
    ramp = ConnectionRamp(cap=8)
    assert run(ramp, 500 * MB) == [1]
    assert ramp.settled


def test_a_cap_of_one_never_adds() -> None:
    assert run(ConnectionRamp(cap=1), 1 * MB) == [1]


def test_a_settled_ramp_adds_nothing() -> None:
    ramp = ConnectionRamp(cap=8)
    ramp.settle()
    assert run(ramp, 1 * MB) == [1]


def test_measuring_waits_for_new_connections_and_lasts_twice_their_start() -> None:
    ramp = ConnectionRamp(cap=8, window=0.05)
    assert ramp.observe(0.0, 0, all_receiving=False) == 0
    # The first connection took 0.4 s to answer (a far server): the window is 0.8 s, not 0.05 s.
    assert ramp.observe(0.4, 0, all_receiving=True) == 0
    assert ramp.observe(1.1, 7 * MB, all_receiving=True) == 0
    assert ramp.observe(1.25, 8 * MB, all_receiving=True) == 3
