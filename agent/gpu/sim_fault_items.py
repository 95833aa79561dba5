"""The fault item syntax of the simulator, and its parser (kinds and rules: `sim_faults`).

A fault item (used in `--simulate` specs, TOML `[[fault]]` tables and inbox files) reads

    KIND[@TARGET][+AT][;PARAM=VALUE]...

- KIND: a `FaultKind` value; `xidNN` is short for `xid;code=NN`.
- TARGET: `gpuN`, `mlx5_N` (an IB rail), `NODE`, `NODE/gpuN` or `NODE/mlx5_N`. Without a node the
  fault hits the fleet's first node.
- AT: when it fires, in seconds after the simulation starts: `30`, `30s`, `500ms`, `2m`, `1.5h`.
  Without it the fault fires as soon as the simulator sees it.
- PARAM=VALUE: kind-specific parameters listed in `RULES` (e.g. `nvlink_down@gpu2;link=5`).

Examples: `ecc_dbe@gpu3`, `xid79@gpu1+30s`, `thermal_slowdown@h100-n002/gpu0+1m;duration=90`,
`ib_port_down@mlx5_3`, `recovery_action@gpu0;action=node_reboot`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from types import MappingProxyType

from agent.gpu.sim_faults import (
    RULES,
    FaultKind,
    ParamValue,
    SimFault,
    convert_param,
    rule_problems,
)


class FaultParseError(ValueError):
    """A fault item that could not be read; `problems` lists every problem found."""

    def __init__(self, text: str, problems: list[str]) -> None:
        super().__init__(f"bad fault {text!r}: " + "; ".join(problems))
        self.problems = problems


_DURATION_RE = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ms|s|m|h)?")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}
_STR_PARAM_RE = re.compile(r"[A-Za-z0-9._-]{1,64}")
_TRUE = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


def parse_duration(text: str) -> float:
    """Seconds from `30`, `30s`, `500ms`, `2m` or `1.5h`; ValueError otherwise."""
    m = _DURATION_RE.fullmatch(text.strip())
    if not m:
        raise ValueError(f"bad time {text!r} (use e.g. 30, 30s, 500ms, 2m, 1.5h)")
    return float(m.group(1)) * _UNITS[m.group(2)]


def build_fault(
    kind_text: str,
    *,
    gpu: int | None = None,
    node: str | None = None,
    at: float | None = None,
    raw_params: Mapping[str, object] | None = None,
) -> tuple[SimFault | None, list[str]]:
    """Check and assemble a fault from parsed parts: (fault or None, every problem found)."""
    problems: list[str] = []
    params: dict[str, ParamValue] = {}
    raw = dict(raw_params or {})
    short = re.fullmatch(r"xid(\d+)", kind_text)
    if short:
        if "code" in raw:
            problems.append("give the XID code once (xidNN or code=NN)")
        raw["code"] = short.group(1)
        kind_text = "xid"
    try:
        kind = FaultKind(kind_text)
    except ValueError:
        known = ", ".join(k.value for k in FaultKind)
        return None, [f"unknown fault kind {kind_text!r} (known: {known}, xidNN)"]
    rule = RULES[kind]
    for name, value in raw.items():
        spec = rule.params.get(name)
        if spec is None:
            allowed = ", ".join(rule.params) or "none"
            problems.append(f"{kind} takes no parameter {name!r} (allowed: {allowed})")
            continue
        converted, problem = convert_param(name, spec, value)
        if problem:
            problems.append(problem)
        elif converted is not None:
            params[name] = converted
    fault = SimFault(kind, gpu=gpu, node=node, at=at, params=MappingProxyType(params))
    problems += rule_problems(fault, given=raw.keys())
    return (None, problems) if problems else (fault, [])


def parse_fault_item(text: str) -> SimFault:
    """Parse `KIND[@TARGET][+AT][;PARAM=VALUE]...`; FaultParseError lists every problem."""
    problems: list[str] = []
    head, *param_items = text.strip().split(";")
    raw_params: dict[str, object] = {}
    for item in param_items:
        name, eq, value = item.partition("=")
        if not eq or not name.strip():
            problems.append(f"parameter {item!r} is not NAME=VALUE")
        elif name.strip() in raw_params:
            problems.append(f"parameter {name.strip()!r} given twice")
        else:
            raw_params[name.strip()] = value.strip()
    head, plus, at_text = head.partition("+")
    at: float | None = None
    if plus:
        try:
            at = parse_duration(at_text)
        except ValueError as e:
            problems.append(str(e))
    kind_text, _, target = head.partition("@")
    gpu, node = None, None
    if "@" in head:
        gpu, node, rail, target_problem = _parse_target(target.strip())
        if target_problem:
            problems.append(target_problem)
        if rail is not None:
            if "rail" in raw_params:
                problems.append("give the rail once (@mlx5_N or rail=N)")
            raw_params["rail"] = rail
    if not kind_text.strip():
        problems.append("missing fault kind")
    fault, more = build_fault(kind_text.strip(), gpu=gpu, node=node, at=at, raw_params=raw_params)
    problems += more
    if problems or fault is None:
        raise FaultParseError(text, problems)
    return fault


def _parse_target(target: str) -> tuple[int | None, str | None, int | None, str | None]:
    """`gpuN` | `mlx5_N` | `NODE` | `NODE/gpuN` | `NODE/mlx5_N` -> (gpu, node, rail, problem)."""
    node, slash, device = target.rpartition("/")
    if not slash:
        node, device = "", target
    if m := re.fullmatch(r"gpu(\d+)", device):
        return int(m.group(1)), node or None, None, None
    if m := re.fullmatch(r"mlx5_(\d+)", device):
        return None, node or None, int(m.group(1)), None
    if slash:
        return None, None, None, f"bad target {target!r} (NODE/gpuN or NODE/mlx5_N)"
    if not target:
        return None, None, None, "empty target after '@'"
    return None, target, None, None
