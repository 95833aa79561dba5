"""The policy's schema as data: every key of every section, its type and its allowed range.

Each spec turns a raw TOML value into the typed value or explains, in one phrase, what is wrong.
The loader walks these tables and collects every problem before giving up.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Protocol

from agent.model import Action, Severity
from agent.policy.limits import CLOCK_EVENT_REASONS

Parsed = tuple[object, str | None]  # (typed value, problem)


def _show(value: object) -> str:
    return f"{type(value).__name__} {value!r}"


class Spec(Protocol):
    """Validates and converts one raw value."""

    def parse(self, value: object) -> Parsed:
        """(typed value, None) when valid, else (None, what is wrong)."""
        ...


@dataclass(frozen=True, slots=True)
class Int:
    """An integer in [lo, hi] (booleans are not integers here)."""

    lo: int
    hi: int

    def parse(self, value: object) -> Parsed:
        if isinstance(value, bool) or not isinstance(value, int):
            return None, f"expected an integer, got {_show(value)}"
        if not self.lo <= value <= self.hi:
            return None, f"must be between {self.lo} and {self.hi}, got {value}"
        return value, None


@dataclass(frozen=True, slots=True)
class Float:
    """A number in [lo, hi] (or (lo, hi] when lo_open); integers are accepted."""

    lo: float
    hi: float
    lo_open: bool = False

    def parse(self, value: object) -> Parsed:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return None, f"expected a number, got {_show(value)}"
        number = float(value)
        low_ok = number > self.lo if self.lo_open else number >= self.lo
        if not (low_ok and number <= self.hi):
            bracket = "(" if self.lo_open else "["
            return None, f"must be in {bracket}{self.lo:g}, {self.hi:g}], got {value}"
        return number, None


@dataclass(frozen=True, slots=True)
class Bool:
    """true or false."""

    def parse(self, value: object) -> Parsed:
        if not isinstance(value, bool):
            return None, f"expected true or false, got {_show(value)}"
        return value, None


@dataclass(frozen=True, slots=True)
class Choice:
    """One string out of a fixed set."""

    choices: tuple[str, ...]

    def parse(self, value: object) -> Parsed:
        if not isinstance(value, str) or value not in self.choices:
            return None, f"expected one of {', '.join(self.choices)}; got {value!r}"
        return value, None


@dataclass(frozen=True, slots=True)
class StrList:
    """A list of non-empty strings, each one of `choices` when given; becomes a tuple."""

    choices: tuple[str, ...] | None = None

    def parse(self, value: object) -> Parsed:
        if not isinstance(value, list):
            return None, f"expected a list of strings, got {_show(value)}"
        bad = [item for item in value if not isinstance(item, str) or not item.strip()]
        if bad:
            return None, f"expected non-empty strings, got {', '.join(map(repr, bad))}"
        if self.choices is not None:
            unknown = [item for item in value if item not in self.choices]
            if unknown:
                return None, (
                    f"unknown {', '.join(map(repr, unknown))}; "
                    f"choose from {', '.join(self.choices)}"
                )
        return tuple(value), None


SectionSchema = Mapping[str, Spec]

NODE: SectionSchema = MappingProxyType(
    {"expected_gpus": Int(0, 4096), "require_persistence_mode": Bool()}
)

HOST: SectionSchema = MappingProxyType(
    {
        "min_mem_available_fraction": Float(0.0, 1.0),
        "disk_warn_fraction": Float(0.0, 1.0, lo_open=True),
        "disk_critical_fraction": Float(0.0, 1.0, lo_open=True),
        "max_load_per_cpu": Float(0.0, 1000.0, lo_open=True),
        "required_services": StrList(),
    }
)

RAILS: SectionSchema = MappingProxyType(
    {
        "expected": Bool(),
        "expected_ib_ports": Int(0, 64),
        "ib_devices": StrList(),
        "link_downed_max_delta": Int(0, 1_000_000),
        "symbol_error_max_delta": Int(0, 1_000_000_000),
    }
)

SKU: SectionSchema = MappingProxyType(
    {
        "match": StrList(),
        "temp_margin_c": Float(0.0, 50.0),
        "expected_nvlinks": Int(0, 36),  # NVML_NVLINK_MAX_LINKS
        "min_pcie_gen": Int(0, 7),
        "min_pcie_width": Int(0, 32),
        "check_pcie_width": Bool(),
        "expected_ib_rate_gbps": Float(0.0, 3200.0),
        "fabric_expected": Bool(),
        "required_services": StrList(),
        "retired_pages_limit": Int(1, 4096),
        "uncorrectable_remap_limit": Int(1, 1_000_000),
        "pcie_replay_rate_factor": Float(0.0, 1000.0, lo_open=True),
        "nvlink_crc_critical_per_s": Float(0.0, 1e9, lo_open=True),
        "nvlink_crc_warn_delta": Int(1, 1_000_000_000),
        "nvlink_replay_critical_delta": Int(1, 1_000_000_000),
        "nvlink_recovery_critical_delta": Int(1, 1_000_000_000),
        "nvlink5_error_critical_delta": Int(1, 1_000_000_000),
        "thermal_violation_warn_fraction": Float(0.0, 1.0),
        "power_violation_warn_fraction": Float(0.0, 1.0),
        "warn_clock_events": StrList(tuple(CLOCK_EVENT_REASONS)),
    }
)

XID: SectionSchema = MappingProxyType(
    {
        "severity": Choice(tuple(s.value for s in Severity)),
        "action": Choice(tuple(a.value for a in Action)),
    }
)

SECTIONS: Mapping[str, SectionSchema] = MappingProxyType(
    {"node": NODE, "host": HOST, "rails": RAILS}
)

SKU_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
XID_MAX = 65535
