"""When a download opens another connection: while it is slow and each addition pays.

A CDN that throttles each connection (as busy ones do) gives N connections about N times the
speed; a server whose link or disk is the limit gives extra connections nothing. So a download
starts with one connection, measures its throughput over a short window, and multiplies its
connections (by ``RAMP_FACTOR``) while the throughput keeps growing, up to a cap. One connection that is already fast
gets no company (on a LAN or localhost more connections only cost CPU).
"""

from __future__ import annotations

from dataclasses import dataclass, field

#: The shortest window throughput is measured over (longer when new connections were slow to start).
RAMP_WINDOW_SECONDS = 0.05
#: Each connection added must bring at least this share of what one brought before, or adding stops.
RAMP_MIN_SHARE = 0.3
#: Each step multiplies the connections by this (up to the cap): few steps, so a short download gains too.
RAMP_FACTOR = 4
#: A single connection this fast gets no company.
FAST_CONNECTION_BYTES_PER_SECOND = 200e6


@dataclass
class ConnectionRamp:
    """Decides, from the bytes received over time, how many connections to add.

    Call ``observe`` often (every few tens of milliseconds) with the clock, the bytes received so
    far and whether every connection asked for has started receiving; it answers how many to add
    now. A window starts only once all connections receive, and lasts at least twice as long as
    they took to start, so a server far away is not judged by its handshakes.
    """

    cap: int
    window: float = RAMP_WINDOW_SECONDS
    min_share: float = RAMP_MIN_SHARE
    factor: int = RAMP_FACTOR
    fast: float = FAST_CONNECTION_BYTES_PER_SECOND
    active: int = 1
    settled: bool = False
    _asked_at: float | None = None
    _mark: tuple[float, int] | None = None
    _window: float = 0.0
    _previous: tuple[int, float] | None = None  # (connections, bytes per second) before the last addition
    rates: list[tuple[int, float]] = field(default_factory=list)  # each window's (connections, bytes/s)

    def __post_init__(self) -> None:
        self.settled = self.cap <= 1

    def settle(self) -> None:
        """Add nothing more (the server refused a connection, or little is left to fetch)."""
        self.settled = True

    def observe(self, now: float, received: int, all_receiving: bool) -> int:
        """How many connections to open now: 0 while measuring or once settled."""
        if self.settled:
            return 0
        if self._asked_at is None:
            self._asked_at = now
        if self._mark is None:
            if all_receiving:
                self._mark = (now, received)
                self._window = max(self.window, 2 * (now - self._asked_at))
            return 0
        started, before = self._mark
        elapsed = now - started
        if elapsed < self._window:
            return 0
        rate = (received - before) / elapsed
        self.rates.append((self.active, rate))
        if self._previous is None:
            grows = rate < self.fast
        else:
            connections, previous_rate = self._previous
            grows = rate >= previous_rate * (1 + self.min_share * (self.active - connections) / connections)
        if not grows or self.active >= self.cap:
            self.settled = True
            return 0
        added = min(self.active * (self.factor - 1), self.cap - self.active)
        self._previous = (self.active, rate)
        self.active += added
        self._asked_at, self._mark = now, None
        return added
