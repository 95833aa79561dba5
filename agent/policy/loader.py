"""Load the policy: shipped defaults, the operator's TOML overlaid, then validate everything.

Order of precedence: `default.toml` shipped in this package < the operator's file. Inside
`[sku.*]`, every SKU inherits `[sku.default]` (after the overlay) and overrides what it names.
Validation never stops at the first problem: `PolicyError.problems` lists every unknown key,
wrong type and out-of-range value, each with its key path.
"""

from __future__ import annotations

import copy
import difflib
import functools
import tomllib
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any

from agent.model import Action, Severity
from agent.policy import schema
from agent.policy.limits import (
    DEFAULT_SKU,
    HostLimits,
    NodeLimits,
    Policy,
    RailLimits,
    SkuLimits,
    XidOverride,
)

TOP_LEVEL = (*schema.SECTIONS, "sku", "xid")


class PolicyError(ValueError):
    """The policy is invalid; `problems` lists every problem found, each with its key path."""

    def __init__(self, problems: list[str], source: str = "policy") -> None:
        self.problems = list(problems)
        self.source = source
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"{source}: {len(self.problems)} problem(s) in the policy:\n{lines}")


def load_policy(path: Path | None = None, sku: str | None = None) -> Policy:
    """The shipped defaults overlaid with the TOML file at `path` (if any), validated.

    `sku` pins the SKU whose limits judge the node; None lets the GPU names choose.
    Raises PolicyError listing every problem (unreadable file and bad TOML included).
    """
    if path is None:
        return build_policy(_shipped(), sku=sku, source="shipped default policy")
    try:
        operator = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        problem = f"cannot read the policy file: {exc.strerror or exc}"
        raise PolicyError([problem], str(path)) from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise PolicyError([f"not valid TOML: {exc}"], str(path)) from exc
    return build_policy(merge(_shipped(), operator), sku=sku, source=str(path))


def policy_from_dict(overrides: Mapping[str, Any], sku: str | None = None) -> Policy:
    """The shipped defaults overlaid with an already-parsed TOML document, validated."""
    return build_policy(merge(_shipped(), overrides), sku=sku, source="policy overrides")


@functools.cache
def default_policy() -> Policy:
    """The shipped policy alone (cached; a Policy is immutable)."""
    return load_policy(None)


def merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """Deep-merge `over` onto `base` (tables merge, everything else replaces); pure."""
    result: dict[str, Any] = dict(base)
    for key, value in over.items():
        old = result.get(key)
        if isinstance(old, Mapping) and isinstance(value, Mapping):
            result[key] = merge(old, value)
        else:
            result[key] = value
    return result


def build_policy(doc: Mapping[str, Any], sku: str | None = None, source: str = "policy") -> Policy:
    """Validate a complete (already merged) document and build the Policy, or raise PolicyError."""
    problems: list[str] = []
    for key in doc:
        if key not in TOP_LEVEL:
            problems.append(_unknown(key, key, TOP_LEVEL))
    sections = {
        name: _section(name, doc.get(name), spec, problems, require_all=True)
        for name, spec in schema.SECTIONS.items()
    }
    skus = _skus(doc.get("sku"), problems)
    xids = _xids(doc.get("xid", {}), problems)
    host = sections["host"]
    if host.get("disk_warn_fraction", 0.0) > host.get("disk_critical_fraction", 1.0):
        problems.append("host.disk_warn_fraction: must not exceed host.disk_critical_fraction")
    if sku is not None and sku not in skus:
        known = ", ".join(sorted(skus)) or "none"
        problems.append(f"sku {sku!r}: the policy has no [sku.{sku}] section (known: {known})")
    if problems:
        raise PolicyError(problems, source)
    return Policy(
        node=NodeLimits(**sections["node"]),
        host=HostLimits(**host),
        rails=RailLimits(**sections["rails"]),
        skus=MappingProxyType(skus),
        xid_overrides=MappingProxyType(xids),
        sku=sku,
    )


@functools.cache
def _shipped_text() -> str:
    return resources.files("agent.policy").joinpath("default.toml").read_text(encoding="utf-8")


def _shipped() -> dict[str, Any]:
    return copy.deepcopy(_parse_shipped())


@functools.cache
def _parse_shipped() -> dict[str, Any]:
    return tomllib.loads(_shipped_text())


def _unknown(path: str, key: str, known: tuple[str, ...] | list[str]) -> str:
    close = difflib.get_close_matches(key, list(known), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"{path}: unknown key{hint}"


def _section(
    path: str,
    table: object,
    spec: schema.SectionSchema,
    problems: list[str],
    *,
    require_all: bool,
) -> dict[str, Any]:
    """Typed values of one table; appends a problem for every bad, unknown or missing key."""
    if not isinstance(table, Mapping):
        problems.append(f"{path}: expected a table, got {type(table).__name__}")
        return {}
    values: dict[str, Any] = {}
    for key, raw in table.items():
        field_spec = spec.get(key)
        if field_spec is None:
            problems.append(_unknown(f"{path}.{key}", key, list(spec)))
            continue
        value, problem = field_spec.parse(raw)
        if problem is not None:
            problems.append(f"{path}.{key}: {problem}")
        else:
            values[key] = value
    if require_all:
        for key in spec:
            if key not in table:
                problems.append(f"{path}.{key}: missing")
    return values


def _skus(table: object, problems: list[str]) -> dict[str, SkuLimits]:
    if not isinstance(table, Mapping):
        problems.append(f"sku: expected a table of SKU sections, got {type(table).__name__}")
        return {}
    before = len(problems)
    base = _section(
        f"sku.{DEFAULT_SKU}", table.get(DEFAULT_SKU, {}), schema.SKU, problems, require_all=True
    )
    own: dict[str, dict[str, Any]] = {}
    for name, sku_table in table.items():
        if name == DEFAULT_SKU:
            continue
        if not schema.SKU_NAME.match(name):
            problems.append(f"sku.{name}: SKU names are lower-case snake_case")
            continue
        own[name] = _section(f"sku.{name}", sku_table, schema.SKU, problems, require_all=False)
    if len(problems) > before:
        return {}
    result = {DEFAULT_SKU: SkuLimits(name=DEFAULT_SKU, **base)}
    for name, values in own.items():
        result[name] = SkuLimits(name=name, **{**base, **values})
    return result


def _xids(table: object, problems: list[str]) -> dict[int, XidOverride]:
    if not isinstance(table, Mapping):
        problems.append(f"xid: expected a table of [xid.N] sections, got {type(table).__name__}")
        return {}
    result: dict[int, XidOverride] = {}
    for key, entry in table.items():
        path = f"xid.{key}"
        if not (key.isdigit() and 0 < int(key) <= schema.XID_MAX):
            problems.append(f"{path}: XID sections are named by number, 1..{schema.XID_MAX}")
            continue
        values = _section(path, entry, schema.XID, problems, require_all=False)
        if isinstance(entry, Mapping) and not entry:
            problems.append(f"{path}: give severity and/or action")
        severity = values.get("severity")
        action = values.get("action")
        result[int(key)] = XidOverride(
            severity=Severity(severity) if severity is not None else None,
            action=Action(action) if action is not None else None,
        )
    return result
