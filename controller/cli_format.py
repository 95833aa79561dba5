"""The operator CLI's shared rendering vocabulary: wire enums as their JSON spelling, short
ages, and the colours of states and severities. Pure: nothing here reads the clock."""

from __future__ import annotations

from typing import Any

from rich.text import Text

from protos.gpufleet.v1 import fleet_pb2 as pb

JsonDict = dict[str, Any]

STATE_STYLE = {
    "ready": "green",
    "allocated": "cyan",
    "registered": "blue",
    "preflight": "blue",
    "suspect": "yellow",
    "unreachable": "magenta",
    "drained": "red",
    "repair": "red",
    "retired": "dim",
}
SEVERITY_STYLE = {"ok": "green", "warn": "yellow", "unknown": "magenta", "critical": "red"}


def severity_name(value: int) -> str:
    """A wire Severity as its JSON spelling ("critical"); unspecified is "unknown"."""
    if value == pb.SEVERITY_UNSPECIFIED:
        return "unknown"
    return pb.Severity.Name(value).removeprefix("SEVERITY_").lower()


def action_name(value: int) -> str:
    """A wire Action as its JSON spelling ("reboot_node"); unspecified is "none"."""
    if value == pb.ACTION_UNSPECIFIED:
        return "none"
    return pb.Action.Name(value).removeprefix("ACTION_").lower()


def format_age(seconds: float | None) -> str:
    """A short human age: "5s", "3m", "2h", "4d"; "-" when unknown."""
    if seconds is None or seconds < 0:
        return "-"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"


def since(at: float, now: float) -> str:
    """The age of a timestamp at `now`; "-" when it was never set (0)."""
    return format_age(now - at) if at > 0 else "-"


def styled(value: str, styles: dict[str, str]) -> Text:
    """The value in its colour from `styles` (plain when it has none)."""
    return Text(value, style=styles.get(value, ""))


def gpu_of(message: pb.Finding | pb.GateReason) -> int | None:
    """The GPU a finding or reason is about; None for the whole node."""
    return message.gpu if message.HasField("gpu") else None
