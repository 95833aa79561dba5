"""The controller's durable fleet state (SQLite, WAL): the only package that imports sqlite3."""

from .records import (
    AuditRow,
    EventRow,
    EvidenceRow,
    Inbound,
    NodeIdentity,
    NodeRow,
    Registration,
    StoredBatch,
    StoredItem,
    TransitionRow,
)
from .runs import StoredRun
from .schema import LATEST_VERSION, SchemaError
from .store import INITIAL_STATE, FleetStore, StaleState, StoreError

__all__ = [
    "INITIAL_STATE",
    "LATEST_VERSION",
    "AuditRow",
    "EventRow",
    "EvidenceRow",
    "FleetStore",
    "Inbound",
    "NodeIdentity",
    "NodeRow",
    "Registration",
    "SchemaError",
    "StaleState",
    "StoreError",
    "StoredBatch",
    "StoredItem",
    "StoredRun",
    "TransitionRow",
]
