"""Pure reconnect and stream decisions: backoff with full jitter, Welcome plans, Ack checks."""

from __future__ import annotations

import itertools
import random
import statistics

import pytest
from hypothesis import given, strategies as st

from agent.link.backoff import MAX_ATTEMPT, backoff_delay, next_attempt
from agent.link.protocol import (
    POISON_STRIKES,
    Strikes,
    accept_ack,
    is_poison,
    next_strikes,
    plan_welcome,
)

bases = st.floats(min_value=1e-3, max_value=10.0)


@given(
    attempt=st.integers(min_value=0, max_value=10_000),
    base=bases,
    factor=st.floats(min_value=1.0, max_value=1000.0),
    r=st.floats(min_value=0.0, max_value=1.0),
)
def test_delay_is_within_zero_and_cap(attempt: int, base: float, factor: float, r: float) -> None:
    cap = base * factor
    delay = backoff_delay(attempt, base, cap, lambda: r)
    assert 0.0 <= delay <= cap
    assert delay <= base * 2.0 ** min(attempt, MAX_ATTEMPT) * (1 + 1e-9)


@given(attempt=st.integers(min_value=0, max_value=200), base=bases)
def test_delay_is_full_jitter_of_the_exponential_ceiling(attempt: int, base: float) -> None:
    cap = base * 1024
    ceiling = min(cap, base * 2.0 ** min(attempt, MAX_ATTEMPT))
    assert backoff_delay(attempt, base, cap, lambda: 0.0) == 0.0
    assert backoff_delay(attempt, base, cap, lambda: 0.5) == pytest.approx(ceiling / 2)


def test_delay_grows_with_attempt_in_expectation_until_the_cap() -> None:
    rng = random.Random(7)
    means = [
        statistics.fmean(backoff_delay(a, 0.5, 30.0, rng.random) for _ in range(2000))
        for a in range(9)
    ]
    assert all(later > earlier for earlier, later in itertools.pairwise(means[:7]))
    assert means[0] == pytest.approx(0.25, rel=0.1)
    assert means[8] == pytest.approx(15.0, rel=0.1)  # capped: uniform on [0, 30)


def test_rand_outside_unit_interval_is_clamped() -> None:
    assert backoff_delay(3, 1.0, 4.0, lambda: 7.0) == 4.0
    assert backoff_delay(3, 1.0, 4.0, lambda: -1.0) == 0.0


@pytest.mark.parametrize(
    ("attempt", "base", "cap"), [(-1, 1.0, 2.0), (0, 0.0, 1.0), (0, 2.0, 1.0), (0, -1.0, 1.0)]
)
def test_bad_backoff_arguments_are_refused(attempt: int, base: float, cap: float) -> None:
    with pytest.raises(ValueError):
        backoff_delay(attempt, base, cap, lambda: 0.5)


def test_healthy_connection_resets_attempts_and_failures_count_up_bounded() -> None:
    assert next_attempt(5, healthy=True) == 0
    assert next_attempt(5, healthy=False) == 6
    assert next_attempt(MAX_ATTEMPT, healthy=False) == MAX_ATTEMPT


def test_welcome_below_our_numbering_acks_and_replays_above_it() -> None:
    plan = plan_welcome(last_stored_seq=7, next_seq=12)
    assert (plan.ack_through, plan.rebase_to, plan.replay_after) == (7, 0, 7)


@given(
    last=st.integers(min_value=0, max_value=2**40), ours=st.integers(min_value=1, max_value=2**40)
)
def test_welcome_never_lets_new_numbering_fall_at_or_below_last_stored(
    last: int, ours: int
) -> None:
    plan = plan_welcome(last, ours)
    next_after = plan.rebase_to if plan.rebase_to else ours
    assert next_after > last
    assert plan.replay_after == last
    assert plan.ack_through < ours


def test_acks_above_what_was_sent_are_not_believed() -> None:
    assert accept_ack(5, highest_sent=5)
    assert accept_ack(0, highest_sent=5)
    assert not accept_ack(6, highest_sent=5)


def test_same_message_refused_three_streams_in_a_row_is_poison() -> None:
    s = Strikes()
    for _ in range(POISON_STRIKES - 1):
        s = next_strikes(s, 42, "INVALID_ARGUMENT")
        assert not is_poison(s)
    s = next_strikes(s, 42, "RESOURCE_EXHAUSTED")
    assert is_poison(s)


def test_strikes_reset_on_other_failures_or_progress() -> None:
    s = next_strikes(next_strikes(Strikes(), 42, "INVALID_ARGUMENT"), 42, "INVALID_ARGUMENT")
    assert next_strikes(s, 42, "UNAVAILABLE") == Strikes()
    assert next_strikes(s, 43, "INVALID_ARGUMENT") == Strikes(seq=43, count=1)
    assert next_strikes(s, 0, "INVALID_ARGUMENT") == Strikes()
