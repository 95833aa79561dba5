"""Stream decisions (pure): what a Welcome means for the spool, which Acks to believe, and
when a message the controller keeps refusing is given up.

The wire contract (fleet.proto header): Welcome.last_stored_seq is the highest seq of this node
the controller has stored; the agent replays above it, and if its own next_seq is not above it
(the agent lost its spool) it must continue numbering from last_stored_seq + 1. An Ack(n) is
cumulative and can only cover what was sent on this stream; an Ack above that is a controller
bug and is ignored (counted), never allowed to delete unsent records.
"""

from __future__ import annotations

from dataclasses import dataclass

# Status codes with which the controller refuses a message itself (bad bounds, too large);
# a message that keeps getting them would block the spool forever.
REFUSAL_CODES = frozenset({"INVALID_ARGUMENT", "RESOURCE_EXHAUSTED"})
POISON_STRIKES = 3


@dataclass(frozen=True, slots=True)
class WelcomePlan:
    """What to do with the spool when a Welcome arrives."""

    ack_through: int  # cumulative ack to apply (0 = none)
    rebase_to: int  # renumber pending records from here (0 = no renumbering)
    replay_after: int  # replay pending records with seq above this


def plan_welcome(last_stored_seq: int, next_seq: int) -> WelcomePlan:
    """The controller stored everything up to `last_stored_seq`; our next seq is `next_seq`."""
    if last_stored_seq >= next_seq:
        return WelcomePlan(
            ack_through=0, rebase_to=last_stored_seq + 1, replay_after=last_stored_seq
        )
    return WelcomePlan(ack_through=last_stored_seq, rebase_to=0, replay_after=last_stored_seq)


def accept_ack(ack_seq: int, highest_sent: int) -> bool:
    """An Ack is believable only up to the highest seq sent (or welcomed) on this stream."""
    return ack_seq <= highest_sent


@dataclass(frozen=True, slots=True)
class Strikes:
    """How many streams in a row ended refusing, with `seq` the oldest unacknowledged message."""

    seq: int = 0
    count: int = 0


def next_strikes(strikes: Strikes, suspect_seq: int, code: str) -> Strikes:
    """Count a stream that ended with `code` while `suspect_seq` was the oldest unacked."""
    if code not in REFUSAL_CODES or suspect_seq == 0:
        return Strikes()
    if suspect_seq == strikes.seq:
        return Strikes(seq=suspect_seq, count=strikes.count + 1)
    return Strikes(seq=suspect_seq, count=1)


def is_poison(strikes: Strikes, threshold: int = POISON_STRIKES) -> bool:
    """True when the same message has been refused `threshold` streams in a row."""
    return strikes.seq != 0 and strikes.count >= threshold
