"""The `--simulate SPEC` grammar: one parser for the inline form and TOML files.

Inline form::

    SKU[:KEY=VALUE[,KEY=VALUE]...]

    h100_sxm                                   one 8-GPU H100 node
    gb300:nodes=36                             two NVL72 domains of 18 four-GPU trays
    h100_sxm:gpus=8,seed=7,fault=ecc_dbe@gpu3,fault=xid79@gpu1+30s,inbox=/tmp/faults

SKU is one of `sim_profiles.PROFILES` (`h100_sxm`, `gb300`). Keys:

- `nodes` (default 1), `gpus` per node (default and maximum: the SKU's), `seed` (default 0),
- `domain_size`: trays per NVLink domain (gb300 only; default and maximum 18; H100 nodes are
  each their own domain),
- `load`: initial load 0..1 of every node (default 0, idle),
- `inbox`: a file the simulator tails for fault items appended at run time, one per line
  (`#` comments and blank lines skipped); the path cannot contain `,` in the inline form,
- `fault`: a fault item (repeatable), `KIND[@TARGET][+AT][;PARAM=VALUE]...`; see
  `agent.gpu.sim_faults` for the kinds and their parameters. Parameters are separated by `;`,
  so quote the spec in a shell.

A spec ending in `.toml` is read as a TOML file with the same keys at the top level and one
`[[fault]]` table per fault: `kind`, optional `node`, `gpu`, `rail`, `at` (seconds or `"2m"`),
and the kind's parameters as further keys. A relative `inbox` is resolved against the file's
folder. Every problem in a spec is reported at once, in one `SimSpecError`.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from agent.gpu.sim_fault_items import (
    FaultParseError,
    build_fault,
    parse_duration,
    parse_fault_item,
)
from agent.gpu.sim_faults import SimFault, fault_problems
from agent.gpu.sim_layout import node_name
from agent.gpu.sim_profiles import PROFILES, SkuProfile

MAX_NODES = 100_000
MAX_SPEC_FILE_BYTES = 1 << 20
_INT_KEYS = ("nodes", "gpus", "seed", "domain_size")


class SimSpecError(ValueError):
    """An invalid simulation spec; `problems` lists every problem found."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("invalid simulation spec:\n" + "\n".join(f"  - {p}" for p in problems))
        self.problems = problems


@dataclass(frozen=True, slots=True)
class SimSpec:
    """A parsed simulation: which SKU, how many nodes, and the scripted faults."""

    sku: str = "h100_sxm"
    nodes: int = 1
    gpus: int | None = None  # None: the SKU's count
    seed: int = 0
    domain_size: int | None = None  # None: the SKU's default
    load: float = 0.0
    inbox: str | None = None
    faults: tuple[SimFault, ...] = ()

    @property
    def profile(self) -> SkuProfile:
        """The SKU's profile (KeyError for an unknown SKU)."""
        return PROFILES[self.sku]

    @property
    def gpus_per_node(self) -> int:
        """GPUs on each node."""
        return self.gpus if self.gpus is not None else self.profile.gpus

    @property
    def nodes_per_domain(self) -> int:
        """Nodes in each NVLink domain."""
        return (
            self.domain_size if self.domain_size is not None else (self.profile.default_domain_size)
        )

    def node_names(self) -> list[str]:
        """Every node's name, in fleet order (`h100-n007`, `gb300-d0-t03`)."""
        return [
            node_name(self.profile, i, self.nodes_per_domain, self.nodes) for i in range(self.nodes)
        ]


def spec_problems(spec: SimSpec, check_names: bool = True) -> list[str]:
    """Every problem with a spec (empty when it is valid). Fault node names are checked only
    when the layout is known (valid nodes and domain_size, and `check_names`)."""
    if spec.sku not in PROFILES:
        return [f"unknown SKU {spec.sku!r} (known: {', '.join(sorted(PROFILES))})"]
    profile = spec.profile
    problems = []
    nodes_ok = 1 <= spec.nodes <= MAX_NODES
    if not nodes_ok:
        problems.append(f"nodes must be 1-{MAX_NODES}, not {spec.nodes}")
    gpus = spec.gpus_per_node
    if not 1 <= gpus <= profile.gpus:
        problems.append(f"gpus must be 1-{profile.gpus} for {profile.key}, not {gpus}")
        gpus = profile.gpus
    if not 0 <= spec.seed < 2**63:
        problems.append(f"seed must be 0 to 2**63-1, not {spec.seed}")
    domain_ok = 1 <= spec.nodes_per_domain <= profile.max_domain_size
    if not domain_ok and not profile.has_fabric:
        problems.append(
            f"domain_size applies only to NVLink-fabric SKUs; each {profile.key} node is its "
            f"own NVLink domain (got {spec.domain_size})"
        )
    elif not domain_ok:
        problems.append(
            f"domain_size must be 1-{profile.max_domain_size} for {profile.key}, "
            f"not {spec.domain_size}"
        )
    if not 0.0 <= spec.load <= 1.0:
        problems.append(f"load must be between 0 and 1, not {spec.load}")
    if spec.inbox is not None and not spec.inbox.strip():
        problems.append("inbox must be a file path")
    names = set(spec.node_names()) if nodes_ok and domain_ok and check_names else None
    for fault in spec.faults:
        problems += [
            f"fault {fault.text()!r}: {p}" for p in fault_problems(fault, profile, gpus, names)
        ]
    return problems


def check_spec(spec: SimSpec) -> None:
    """Raise SimSpecError listing every problem, if there are any."""
    problems = spec_problems(spec)
    if problems:
        raise SimSpecError(problems)


def parse_sim_spec(text: str) -> SimSpec:
    """Parse an inline spec or, for text ending in `.toml`, a TOML file; see the module doc."""
    text = text.strip()
    if text.lower().endswith(".toml"):
        return _parse_toml_file(Path(text))
    sku, colon, rest = text.partition(":")
    problems: list[str] = []
    values: dict[str, object] = {"sku": sku.strip()}
    faults: list[SimFault] = []
    if not sku.strip():
        problems.append("missing SKU (e.g. h100_sxm or gb300:nodes=36)")
    items = rest.split(",") if colon else []
    for n, item in enumerate(items, 1):
        key, eq, value = (s.strip() for s in item.partition("="))
        if not eq or not key:
            problems.append(f"item {n} {item!r} is not KEY=VALUE")
        elif key == "fault":
            try:
                faults.append(parse_fault_item(value))
            except FaultParseError as e:
                problems.append(f"item {n}, fault {value!r}: " + "; ".join(e.problems))
        elif key not in ("load", "inbox", *_INT_KEYS):
            problems.append(f"unknown key {key!r} (known: {', '.join(_KNOWN_KEYS)})")
        elif key in values:
            problems.append(f"key {key!r} given twice")
        else:
            values[key] = value
    return _assemble(values, faults, problems)


_KNOWN_KEYS = ("nodes", "gpus", "seed", "domain_size", "load", "inbox", "fault")


def _assemble(values: Mapping[str, object], faults: list[SimFault], problems: list[str]) -> SimSpec:
    """Convert the typed keys, build the spec, validate it, and raise with every problem."""
    kwargs: dict[str, object] = {}
    parsed = len(problems)
    for key in _INT_KEYS:
        if key in values:
            raw = values[key]
            if isinstance(raw, bool) or not isinstance(raw, int | str):
                problems.append(f"{key} must be an integer, not {raw!r}")
                continue
            try:
                kwargs[key] = int(raw)
            except ValueError:
                problems.append(f"{key} must be an integer, not {raw!r}")
    if "load" in values:
        raw = values["load"]
        try:
            if isinstance(raw, bool) or not isinstance(raw, int | float | str):
                raise ValueError
            kwargs["load"] = float(raw)
        except ValueError:
            problems.append(f"load must be a number 0..1, not {raw!r}")
    if "inbox" in values:
        if isinstance(values["inbox"], str):
            kwargs["inbox"] = values["inbox"]
        else:
            problems.append(f"inbox must be a path, not {values['inbox']!r}")
    sku = values.get("sku")
    if not isinstance(sku, str):
        problems.append(f"sku must be a string, not {sku!r}")
        sku = ""
    spec = SimSpec(sku=sku, faults=tuple(faults), **kwargs)  # type: ignore[arg-type]
    if sku:
        problems += spec_problems(spec, check_names=len(problems) == parsed)
    if problems:
        raise SimSpecError(problems)
    return spec


def _parse_toml_file(path: Path) -> SimSpec:
    try:
        with path.open("rb") as f:
            data = f.read(MAX_SPEC_FILE_BYTES + 1)
    except OSError as e:
        raise SimSpecError([f"cannot read {path}: {e.strerror or e}"]) from None
    if len(data) > MAX_SPEC_FILE_BYTES:
        raise SimSpecError([f"{path} is larger than {MAX_SPEC_FILE_BYTES} bytes"])
    try:
        doc = tomllib.loads(data.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise SimSpecError([f"{path}: {e}"]) from None
    return parse_sim_toml(doc, base=path.parent)


def parse_sim_toml(doc: Mapping[str, object], base: Path | None = None) -> SimSpec:
    """Build a spec from a parsed TOML document; a relative inbox is resolved against `base`."""
    problems: list[str] = []
    values = {k: v for k, v in doc.items() if k != "fault"}
    for key in values:
        if key not in ("sku", "load", "inbox", *_INT_KEYS):
            problems.append(f"unknown key {key!r} (known: sku, {', '.join(_KNOWN_KEYS)})")
    if "sku" not in values:
        problems.append("missing key 'sku' (e.g. sku = \"gb300\")")
    if isinstance(values.get("inbox"), str) and base is not None:
        values["inbox"] = str(base / str(values["inbox"]))
    tables = doc.get("fault", [])
    faults: list[SimFault] = []
    if not isinstance(tables, list):
        problems.append("fault must be an array of tables ([[fault]])")
        tables = []
    for n, table in enumerate(tables, 1):
        fault, more = _fault_from_table(table)
        problems += [f"fault {n}: {p}" for p in more]
        if fault is not None:
            faults.append(fault)
    return _assemble(values, faults, problems)


def _fault_from_table(table: object) -> tuple[SimFault | None, list[str]]:
    if not isinstance(table, dict):
        return None, ["must be a table"]
    problems: list[str] = []
    raw = dict(table)
    kind = raw.pop("kind", None)
    if not isinstance(kind, str):
        return None, [f'needs kind = "..." (a string), not {kind!r}']
    node = raw.pop("node", None)
    if node is not None and not isinstance(node, str):
        problems.append(f"node must be a string, not {node!r}")
        node = None
    gpu = raw.pop("gpu", None)
    if gpu is not None and (isinstance(gpu, bool) or not isinstance(gpu, int)):
        problems.append(f"gpu must be an integer, not {gpu!r}")
        gpu = None
    at_raw = raw.pop("at", None)
    at: float | None = None
    if isinstance(at_raw, int | float) and not isinstance(at_raw, bool):
        at = float(at_raw)
    elif isinstance(at_raw, str):
        try:
            at = parse_duration(at_raw)
        except ValueError as e:
            problems.append(str(e))
    elif at_raw is not None:
        problems.append(f'at must be seconds or a time like "2m", not {at_raw!r}')
    fault, more = build_fault(kind, gpu=gpu, node=node, at=at, raw_params=raw)
    problems += more
    return (None if problems else fault), problems
