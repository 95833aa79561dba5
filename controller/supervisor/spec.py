"""The run spec (TOML): what to launch, how it is laid out, and how to supervise it.

    [run]
    name = "dsv3-mini"
    command = ["python", "-m", "examples.deepseek_v3_mini.train", "--steps", "{steps}",
               "--ckpt-dir", "{checkpoint_dir}", "--ckpt-every", "{checkpoint_interval}"]
    steps = 40
    tokens_per_step = 4096
    [layout]
    nodes = 4              # or world_size; ranks = nodes × ranks_per_node
    ranks_per_node = 2
    ep_size = 4            # an EP group = ep_size consecutive ranks in one NVLink domain
    pp_size = 1
    [checkpoint]
    dir = "/shared/ckpt/dsv3-mini"
    interval_steps = 5
    keep = 3
    [supervision]
    restart_budget = 3
    spares_per_domain = 1
    hang_timeout_s = 30
    startup_timeout_s = 120
    stop_grace_s = 5

`{placeholders}` in the command are filled from the spec; the agent adds the torch rendezvous
environment (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT). `load_run_spec` reports
every problem at once.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_RUN_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")


PLACEHOLDERS = ("steps", "checkpoint_dir", "checkpoint_interval", "keep", "ep_size", "pp_size",
                "name", "world_size", "ranks_per_node")


class RunSpecError(ValueError):
    """Every problem found in a run spec."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.problems = problems
        super().__init__(f"{source}: {len(problems)} problem(s):\n  - " + "\n  - ".join(problems))


@dataclass(frozen=True)
class RunSpec:
    """A validated run spec (the blueprint; a `Run` is one execution of it)."""

    name: str
    command: tuple[str, ...]
    ranks_per_node: int
    world_size: int
    ep_size: int
    checkpoint_dir: str
    pp_size: int = 1
    steps: int = 0
    tokens_per_step: int = 0
    checkpoint_interval: int = 10
    checkpoint_keep: int = 3
    restart_budget: int = 3
    spares_per_domain: int = 0
    hang_timeout_s: float = 60.0
    startup_timeout_s: float = 300.0
    stop_grace_s: float = 5.0
    env: Mapping[str, str] = field(default_factory=dict)

    @property
    def nodes(self) -> int:
        return self.world_size // self.ranks_per_node

    @property
    def dp_size(self) -> int:
        return self.world_size // self.pp_size

    def argv(self) -> tuple[str, ...]:
        """The command with placeholders filled."""
        values = {"steps": self.steps, "checkpoint_dir": self.checkpoint_dir,
                  "checkpoint_interval": self.checkpoint_interval, "keep": self.checkpoint_keep,
                  "ep_size": self.ep_size, "pp_size": self.pp_size, "name": self.name,
                  "world_size": self.world_size, "ranks_per_node": self.ranks_per_node}
        return tuple(part.format(**values) for part in self.command)


_SECTIONS: Mapping[str, Mapping[str, type | tuple[type, ...]]] = {
    "run": {"name": str, "command": list, "steps": int, "tokens_per_step": int, "env": dict},
    "layout": {"nodes": int, "world_size": int, "ranks_per_node": int, "ep_size": int,
               "pp_size": int},
    "checkpoint": {"dir": str, "interval_steps": int, "keep": int},
    "supervision": {"restart_budget": int, "spares_per_domain": int,
                    "hang_timeout_s": (int, float), "startup_timeout_s": (int, float),
                    "stop_grace_s": (int, float)},
}


def load_run_spec(path: Path) -> RunSpec:
    """Read and validate a TOML run spec."""
    try:
        doc = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise RunSpecError(str(path), [str(exc)]) from exc
    return run_spec_from_dict(doc, str(path))


def run_spec_from_dict(doc: Mapping[str, Any], source: str = "run spec") -> RunSpec:
    """Validate a parsed spec; raise RunSpecError listing every problem."""
    problems: list[str] = []
    values: dict[str, dict[str, Any]] = {}
    for key in doc:
        if key not in _SECTIONS:
            problems.append(f"unknown section [{key}] (known: {', '.join(_SECTIONS)})")
    for section, fields_ in _SECTIONS.items():
        table = doc.get(section, {})
        values[section] = {}
        if not isinstance(table, dict):
            problems.append(f"[{section}] must be a table")
            continue
        for key, val in table.items():
            if key not in fields_:
                problems.append(f"unknown key {section}.{key}")
            elif isinstance(val, bool) or not isinstance(val, fields_[key]):
                problems.append(f"{section}.{key} has the wrong type ({type(val).__name__})")
            else:
                values[section][key] = val
    spec = _assemble(values, problems)
    if problems or spec is None:
        raise RunSpecError(source, problems)
    return spec


def _assemble(v: dict[str, dict[str, Any]], problems: list[str]) -> RunSpec | None:
    run, layout, ckpt, sup = v["run"], v["layout"], v["checkpoint"], v["supervision"]
    for section, key in (("run", "name"), ("run", "command"), ("layout", "ranks_per_node"),
                         ("layout", "ep_size"), ("checkpoint", "dir")):
        if key not in v[section]:
            problems.append(f"missing {section}.{key}")
    name = run.get("name")
    if isinstance(name, str) and not _RUN_NAME.fullmatch(name):
        problems.append(f"run.name {name!r} must be 1-128 characters of A-Z a-z 0-9 . _ - "
                        "not starting with '.' or '-' (it names files, jobs and wire records)")
    command = run.get("command", [])
    if not command or not all(isinstance(part, str) for part in command):
        problems.append("run.command must be a non-empty list of strings")
    rpn = layout.get("ranks_per_node", 0)
    if "world_size" in layout and "nodes" in layout:
        problems.append("give layout.nodes or layout.world_size, not both")
    world = layout.get("world_size", layout.get("nodes", 0) * rpn)
    ep, pp = layout.get("ep_size", 0), layout.get("pp_size", 1)
    checks = [
        (rpn > 0, "layout.ranks_per_node must be > 0"),
        (world > 0, "layout.nodes or layout.world_size must be > 0"),
        (ep > 0, "layout.ep_size must be > 0"),
        (pp > 0, "layout.pp_size must be > 0"),
        (rpn <= 0 or world % rpn == 0, "world_size must be a multiple of ranks_per_node"),
        (ep <= 0 or rpn <= 0 or ep % rpn == 0,
         "ep_size must be a multiple of ranks_per_node (an EP group holds whole nodes)"),
        (pp <= 0 or ep <= 0 or world % (pp * ep) == 0,
         "world_size must be a multiple of pp_size × ep_size"),
        (sup.get("restart_budget", 3) >= 0, "supervision.restart_budget must be >= 0"),
        (sup.get("spares_per_domain", 0) >= 0, "supervision.spares_per_domain must be >= 0"),
        (sup.get("hang_timeout_s", 60.0) > 0, "supervision.hang_timeout_s must be > 0"),
        (ckpt.get("interval_steps", 10) > 0, "checkpoint.interval_steps must be > 0"),
        (ckpt.get("keep", 3) > 0, "checkpoint.keep must be > 0"),
    ]
    problems.extend(message for ok, message in checks if not ok)
    env = run.get("env", {})
    if not all(isinstance(k, str) and isinstance(x, str) for k, x in env.items()):
        problems.append("run.env must map strings to strings")
    if problems:
        return None
    spec = RunSpec(
        name=run["name"], command=tuple(command), ranks_per_node=rpn, world_size=world,
        ep_size=ep, pp_size=pp, checkpoint_dir=ckpt["dir"], steps=run.get("steps", 0),
        tokens_per_step=run.get("tokens_per_step", 0),
        checkpoint_interval=ckpt.get("interval_steps", 10), checkpoint_keep=ckpt.get("keep", 3),
        restart_budget=sup.get("restart_budget", 3),
        spares_per_domain=sup.get("spares_per_domain", 0),
        hang_timeout_s=float(sup.get("hang_timeout_s", 60.0)),
        startup_timeout_s=float(sup.get("startup_timeout_s", 300.0)),
        stop_grace_s=float(sup.get("stop_grace_s", 5.0)), env=dict(env),
    )
    try:
        spec.argv()
    except (KeyError, IndexError, ValueError) as exc:
        problems.append(f"run.command has a placeholder that cannot be filled ({exc!r}); the "
                        "known ones are {" + "}, {".join(PLACEHOLDERS) + "}; write a literal "
                        "brace as {{ or }}")
        return None
    return spec
