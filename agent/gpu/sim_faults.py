"""Faults for the simulated fleet: the kinds, their parameters and targets (as data), and
`SimFault` itself. The item syntax (`KIND[@TARGET][+AT][;PARAM=VALUE]...`) is parsed by
`agent.gpu.sim_fault_items`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from enum import Enum, StrEnum
from types import MappingProxyType

from agent.gpu.sim_profiles import FABRIC_HEALTH_SHIFTS, RECOVERY_ACTIONS, SkuProfile

ParamValue = int | float | str | bool


class FaultKind(StrEnum):
    """What can go wrong on a simulated node."""

    ECC_DBE = "ecc_dbe"  # volatile double-bit ECC error (+ XID 48, pending row remap)
    REMAP_FAILURE = "remap_failure"  # row remapping failed (+ XID 64)
    REMAP_PENDING = "remap_pending"  # an uncorrectable row awaits remapping at reset
    XID = "xid"  # an XID event; 79 also loses the GPU
    THERMAL_SLOWDOWN = "thermal_slowdown"  # at the slowdown threshold, HW thermal throttling
    NVLINK_DOWN = "nvlink_down"  # one NVLink down
    NVLINK_ERRORS = "nvlink_errors"  # NVLink error counters growing at `rate` per second
    PCIE_WIDTH = "pcie_width"  # PCIe link trained below its maximum width
    PCIE_REPLAY = "pcie_replay"  # PCIe replay counter growing at `rate` per minute
    FABRIC_INCOMPLETE = "fabric_incomplete"  # fabric registration not complete, or unhealthy
    IB_PORT_DOWN = "ib_port_down"  # one IB rail down
    FIRMWARE_DRIFT = "firmware_drift"  # VBIOS (and optionally driver) differs from the fleet
    RECOVERY_ACTION = "recovery_action"  # NVML recovery action set (+ XID 154)
    SLOW = "slow"  # no telemetry effect; a marker for burn-in simulations


class Target(Enum):
    """Whether a fault kind names a GPU."""

    GPU = "gpu"  # needs one
    NODE = "node"  # takes none
    ANY = "any"  # optional: one GPU, or all of them


@dataclass(frozen=True, slots=True)
class Param:
    """One fault parameter: its type, default and allowed values."""

    kind: type[int] | type[float] | type[str] | type[bool]
    default: ParamValue | None = None  # None: optional without a default, unless required
    required: bool = False
    low: float | None = None
    high: float | None = None
    choices: tuple[ParamValue, ...] | None = None
    names: Mapping[str, int] | None = None  # symbolic spellings of an int parameter


@dataclass(frozen=True, slots=True)
class FaultRule:
    """What a fault kind targets, its parameters, the XID it raises and where it applies."""

    target: Target
    params: Mapping[str, Param] = field(default_factory=dict)
    xid: int | None = None
    needs_fabric: bool = False


_RATE = Param(float, 10.0, low=1e-6, high=1e6)
RULES: Mapping[FaultKind, FaultRule] = MappingProxyType(
    {
        FaultKind.ECC_DBE: FaultRule(
            Target.GPU,
            {"count": Param(int, 1, low=1, high=1_000_000), "remap": Param(bool, True)},
            xid=48,
        ),
        FaultKind.REMAP_FAILURE: FaultRule(Target.GPU, xid=64),
        FaultKind.REMAP_PENDING: FaultRule(
            Target.GPU, {"rows": Param(int, 1, low=1, high=100_000)}
        ),
        FaultKind.XID: FaultRule(Target.GPU, {"code": Param(int, required=True, low=1, high=999)}),
        FaultKind.THERMAL_SLOWDOWN: FaultRule(
            Target.GPU, {"duration": Param(float, low=1e-3, high=1e9)}
        ),
        FaultKind.NVLINK_DOWN: FaultRule(Target.GPU, {"link": Param(int, 0, low=0, high=35)}),
        FaultKind.NVLINK_ERRORS: FaultRule(
            Target.GPU, {"link": Param(int, 0, low=0, high=35), "rate": _RATE}
        ),
        FaultKind.PCIE_WIDTH: FaultRule(
            Target.GPU, {"width": Param(int, 8, choices=(1, 2, 4, 8, 16))}
        ),
        FaultKind.PCIE_REPLAY: FaultRule(
            Target.GPU, {"rate": Param(float, 100.0, low=1e-6, high=1e6)}
        ),
        FaultKind.FABRIC_INCOMPLETE: FaultRule(
            Target.ANY,
            {
                "state": Param(int, 2, low=1, high=2),
                "health": Param(str, choices=tuple(FABRIC_HEALTH_SHIFTS)),
            },
            needs_fabric=True,
        ),
        FaultKind.IB_PORT_DOWN: FaultRule(Target.NODE, {"rail": Param(int, 0, low=0, high=63)}),
        FaultKind.FIRMWARE_DRIFT: FaultRule(
            Target.ANY, {"vbios": Param(str), "driver": Param(str)}
        ),
        FaultKind.RECOVERY_ACTION: FaultRule(
            Target.GPU,
            {"action": Param(int, 1, low=0, high=7, names=RECOVERY_ACTIONS)},
            xid=154,
        ),
        FaultKind.SLOW: FaultRule(Target.ANY, {"factor": Param(float, 0.5, low=1e-3, high=1.0)}),
    }
)


@dataclass(frozen=True, slots=True)
class SimFault:
    """One scripted or injected fault."""

    kind: FaultKind
    gpu: int | None = None
    node: str | None = None  # None: the fleet's first node
    at: float | None = None  # seconds after the simulation start; None: as soon as seen
    params: Mapping[str, ParamValue] = field(default_factory=dict)

    def param(self, name: str) -> ParamValue | None:
        """The parameter's value, or its default from `RULES`."""
        if name in self.params:
            return self.params[name]
        return RULES[self.kind].params[name].default

    def int_param(self, name: str) -> int:
        """An int parameter (bools and floats are coerced)."""
        return int(self.param(name) or 0)

    def float_param(self, name: str) -> float:
        """A float parameter."""
        return float(self.param(name) or 0.0)

    @property
    def xid(self) -> int | None:
        """The XID this fault delivers when it fires, if any."""
        if self.kind is FaultKind.XID:
            return self.int_param("code")
        return RULES[self.kind].xid

    def text(self) -> str:
        """The fault in item syntax; `parse_fault_item(f.text()) == f`."""
        params = dict(self.params)
        head = str(self.kind)
        if self.kind is FaultKind.XID and "code" in params:
            head += str(params.pop("code"))
        where = [self.node] if self.node else []
        if self.gpu is not None:
            where.append(f"gpu{self.gpu}")
        if where:
            head += "@" + "/".join(where)
        if self.at is not None:
            head += "+" + (f"{self.at:.6f}".rstrip("0").rstrip(".") or "0") + "s"
        return ";".join([head, *(f"{k}={_fmt(v)}" for k, v in params.items())])


def _fmt(value: ParamValue) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value) if isinstance(value, float) else str(value)


_NODE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")
_STR_PARAM_RE = re.compile(r"[A-Za-z0-9._-]{1,64}")
_TRUE = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


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


def rule_problems(fault: SimFault, given: Collection[str] | None = None) -> list[str]:
    """Problems with a fault against its kind's rule: parameters, target, time. `given` names
    the parameters that were supplied (default: those in `fault.params`)."""
    rule, kind = RULES[fault.kind], fault.kind
    problems: list[str] = []
    for name, value in fault.params.items():
        spec = rule.params.get(name)
        if spec is None:
            problems.append(
                f"{kind} takes no parameter {name!r} (allowed: {', '.join(rule.params) or 'none'})"
            )
        elif (problem := convert_param(name, spec, value)[1]) is not None:
            problems.append(problem)
    given = fault.params.keys() if given is None else given
    problems += [
        f"{kind} needs {n}=" for n, p in rule.params.items() if p.required and n not in given
    ]
    if rule.target is Target.GPU and fault.gpu is None:
        problems.append(f"{kind} needs a GPU (e.g. {kind}@gpu0)")
    if rule.target is Target.NODE and fault.gpu is not None:
        problems.append(f"{kind} applies to a node, not a GPU")
    if kind is FaultKind.FABRIC_INCOMPLETE and {"state", "health"} <= set(given):
        problems.append("fabric_incomplete takes state= or health=, not both")
    if fault.gpu is not None and fault.gpu < 0:
        problems.append(f"gpu must be >= 0, not {fault.gpu}")
    if fault.node is not None and not _NODE_RE.fullmatch(fault.node):
        problems.append(f"bad node name {fault.node!r}")
    if fault.at is not None and not (math.isfinite(fault.at) and 0 <= fault.at <= 1e9):
        problems.append(f"at must be between 0 and 1e9 seconds, not {fault.at!r}")
    return problems


def fault_problems(
    fault: SimFault, profile: SkuProfile, gpus: int, node_names: Collection[str] | None = None
) -> list[str]:
    """Every problem with a fault on a given fleet (its rule, then SKU, GPU count, nodes)."""
    problems = rule_problems(fault)
    if problems:
        return problems
    if RULES[fault.kind].needs_fabric and not profile.has_fabric:
        problems.append(f"{fault.kind} does not apply to {profile.key} (no NVLink fabric state)")
    if fault.gpu is not None and fault.gpu >= gpus:
        problems.append(f"gpu {fault.gpu} out of range ({profile.key} node has gpus 0-{gpus - 1})")
    if fault.node is not None and node_names is not None and fault.node not in node_names:
        problems.append(f"no node {fault.node!r} in this fleet")
    if "link" in RULES[fault.kind].params and fault.int_param("link") >= profile.nvlinks:
        problems.append(f"link {fault.int_param('link')} out of range (0-{profile.nvlinks - 1})")
    if fault.kind is FaultKind.IB_PORT_DOWN and fault.int_param("rail") >= profile.ib_rails:
        problems.append(
            f"rail {fault.int_param('rail')} out of range (mlx5_0-mlx5_{profile.ib_rails - 1})"
        )
    return problems
