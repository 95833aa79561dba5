"""Reconnect timing (pure): exponential backoff with full jitter.

Full jitter (AWS architecture blog, "Exponential Backoff And Jitter"): the delay is uniform in
[0, min(cap, base * 2**attempt)), so a fleet of agents that lost the controller together does
not come back in lockstep. `attempt` counts failed connections since the last healthy one.
"""

from __future__ import annotations

from collections.abc import Callable

MAX_ATTEMPT = 64  # 2**64 * base is past any cap; counting further only risks overflow


def backoff_delay(attempt: int, base: float, cap: float, rand: Callable[[], float]) -> float:
    """Seconds to wait before connection attempt `attempt` (0 = right after a healthy one).

    `rand` returns a float in [0, 1) (e.g. `random.Random(seed).random`); values outside are
    clamped. Raises ValueError for a negative attempt or a non-positive base or cap < base.
    """
    if attempt < 0:
        raise ValueError(f"attempt must be >= 0, got {attempt}")
    if not base > 0 or not cap >= base:
        raise ValueError(f"need 0 < base <= cap, got base={base} cap={cap}")
    ceiling = cap if attempt >= MAX_ATTEMPT else min(cap, base * 2.0**attempt)
    return ceiling * min(max(rand(), 0.0), 1.0)


def next_attempt(attempt: int, healthy: bool) -> int:
    """The attempt counter after a connection ended: reset by a healthy one, else one more."""
    return 0 if healthy else min(attempt + 1, MAX_ATTEMPT)
