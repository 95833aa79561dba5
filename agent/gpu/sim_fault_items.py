"""Faults for the simulated fleet: the kinds, their parameters (as data), and the item parser.

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

import math
import re
from collections.abc import Mapping
from types import MappingProxyType

from agent.gpu.sim_faults import RULES, FaultKind, Param, ParamValue, SimFault, Target


class FaultParseError(ValueError):
    """A fault item that could not be read; `problems` lists every problem found."""

    def __init__(self, text: str, problems: list[str]) -> None:
        super().__init__(f"bad fault {text!r}: " + "; ".join(problems))
        self.problems = problems


_NODE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")
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


def convert_param(name: str, spec: Param, raw: object) -> tuple[ParamValue | None, str | None]:
    """Convert a raw (text or TOML) value to the parameter's type: (value, problem)."""
    value: ParamValue
    try:
        if spec.names is not None and isinstance(raw, str) and raw.lower() in spec.names:
            value = spec.names[raw.lower()]
        elif spec.kind is bool:
            if isinstance(raw, bool):
                value = raw
            elif str(raw).lower() in _TRUE:
                value = _TRUE[str(raw).lower()]
            else:
                return None, f"{name} must be true or false, not {raw!r}"
        elif spec.kind is str:
            value = str(raw)
            if spec.choices is None and not _STR_PARAM_RE.fullmatch(value):
                return None, f"{name} must be 1-64 of [A-Za-z0-9._-], not {raw!r}"
        elif isinstance(raw, bool) or not isinstance(raw, int | float | str):
            raise TypeError(raw)
        elif spec.kind is int:
            if isinstance(raw, float):
                raise TypeError(raw)
            value = int(raw)
        else:
            value = float(raw)
    except (TypeError, ValueError):
        names = f" or one of {', '.join(spec.names)}" if spec.names else ""
        return None, f"{name} must be {spec.kind.__name__}{names}, not {raw!r}"
    if isinstance(value, float) and not math.isfinite(value):
        return None, f"{name} must be finite, not {raw!r}"
    if spec.choices is not None and value not in spec.choices:
        return None, f"{name} must be one of {', '.join(map(str, spec.choices))}, not {raw!r}"
    number = isinstance(value, int | float) and not isinstance(value, bool)
    low = spec.low if spec.low is not None else -math.inf
    high = spec.high if spec.high is not None else math.inf
    if number and not low <= value <= high:  # type: ignore[operator]
        return None, f"{name} must be in [{low:g}, {high:g}], not {raw!r}"
    return value, None


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
    problems += [
        f"{kind} needs {n}=" for n, p in rule.params.items() if p.required and n not in raw
    ]
    if rule.target is Target.GPU and gpu is None:
        problems.append(f"{kind} needs a GPU (e.g. {kind}@gpu0)")
    if rule.target is Target.NODE and gpu is not None:
        problems.append(f"{kind} applies to a node, not a GPU")
    if kind is FaultKind.FABRIC_INCOMPLETE and {"state", "health"} <= raw.keys():
        problems.append("fabric_incomplete takes state= or health=, not both")
    if gpu is not None and gpu < 0:
        problems.append(f"gpu must be >= 0, not {gpu}")
    if node is not None and not _NODE_RE.fullmatch(node):
        problems.append(f"bad node name {node!r}")
    if at is not None and not (math.isfinite(at) and 0 <= at <= 1e9):
        problems.append(f"at must be between 0 and 1e9 seconds, not {at!r}")
    if problems:
        return None, problems
    return SimFault(kind, gpu=gpu, node=node, at=at, params=MappingProxyType(params)), []


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
