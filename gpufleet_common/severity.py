"""How bad a finding is: the one vocabulary of the agent's checks, the controller's gate and the
wire (the proto's SEVERITY_* values map onto it one to one)."""

from __future__ import annotations

from enum import StrEnum


class Severity(StrEnum):
    """Values are the JSON spellings; `rank` orders worst-of."""

    OK = "ok"
    WARN = "warn"
    UNKNOWN = "unknown"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        """Order for worst-of: ok < warn < unknown < critical (unknown is not fit to admit)."""
        return _SEVERITY_RANK[self]

    @property
    def exit_code(self) -> int:
        """Nagios exit code: 0 OK, 1 WARN, 2 CRITICAL, 3 UNKNOWN."""
        return _NAGIOS_EXIT[self]


_SEVERITY_RANK = {Severity.OK: 0, Severity.WARN: 1, Severity.UNKNOWN: 2, Severity.CRITICAL: 3}
_NAGIOS_EXIT = {Severity.OK: 0, Severity.WARN: 1, Severity.CRITICAL: 2, Severity.UNKNOWN: 3}
