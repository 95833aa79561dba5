"""The agent's link to the controller: a reconnecting gRPC stream backed by an on-disk spool.

`ControllerLink` (client.py) is what the agent daemon uses; `Spool` (spool.py) keeps what the
controller has not acknowledged; `convert` turns domain types into wire messages; `directives`
validates what the controller asks for. The pure decisions live in `backoff`, `drop_policy` and
`protocol`.
"""

from agent.link.backoff import backoff_delay
from agent.link.client import ControllerLink, LinkState
from agent.link.config import LinkConfig, TlsConfig
from agent.link.dispatch import DirectiveHandler
from agent.link.drop_policy import SpoolLimits
from agent.link.spool import RecordTooLargeError, Spool, SpoolError, SpoolLockedError
from agent.link.types import (
    CheckNow,
    Directive,
    DirectiveError,
    DirectiveResult,
    NodeIdentity,
    RankAssignment,
    RankExit,
    RunBurnIn,
    SetDrain,
    StartRanks,
    StopRanks,
)

__all__ = [
    "CheckNow",
    "ControllerLink",
    "Directive",
    "DirectiveError",
    "DirectiveHandler",
    "DirectiveResult",
    "LinkConfig",
    "LinkState",
    "NodeIdentity",
    "RankAssignment",
    "RankExit",
    "RecordTooLargeError",
    "RunBurnIn",
    "SetDrain",
    "Spool",
    "SpoolError",
    "SpoolLimits",
    "SpoolLockedError",
    "StartRanks",
    "StopRanks",
    "TlsConfig",
    "backoff_delay",
]
