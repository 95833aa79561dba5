"""The sbatch script of one attempt of a run. Pure: text in, text out.

The job asks Slurm for exactly the placement's nodes (`--nodelist`), keeps drained nodes out
(`--exclude`), and starts `ranks_per_node` tasks on each with one `srun`. Every task takes
its torch rendezvous environment from the placement, not from Slurm's task numbering: Slurm
numbers tasks in its own node order, while the placement fixes which node holds which ranks
(an expert-parallel group must stay inside one NVLink domain). So each task looks its node up
in the placement and sets RANK = that node's rank for SLURM_LOCALID, LOCAL_RANK =
SLURM_LOCALID, WORLD_SIZE = the spec's world size (checked against SLURM_NTASKS), MASTER_ADDR
= the first placement node's address, and MASTER_PORT = port_base + job id % port_span (a new
port per attempt, so a restart never meets the previous attempt's store).
TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1 is set for torch elastic restarts (see torch issue
135712).

Rank progress: every task also gets what `agent.ranks.reporter.ProgressReporter` reads,
GPUFLEET_RUN_ID (the run's name), GPUFLEET_ATTEMPT and GPUFLEET_PROGRESS_SOCKET (its node's
agent's standing socket, `BatchOptions.progress_socket` with `{node}` replaced by the node's
name), so the ranks report to their node's agent, which forwards the steps to the controller
(hang detection, step, goodput). An empty `progress_socket` leaves reporting off.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from controller.slurm.hostlist import check_node_name
from controller.supervisor.placement import Placement
from controller.supervisor.spec import RunSpec

EXIT_NOT_IN_PLACEMENT = 97  # a task landed on a node the placement does not name
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_RESERVED_ENV = frozenset({"RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT",
                           "GPUFLEET_RUN_ID", "GPUFLEET_ATTEMPT", "GPUFLEET_PROGRESS_SOCKET"})
DEFAULT_PROGRESS_SOCKET = "/run/gpufleet-agent/progress.sock"  # the agent unit's default
NODE_PLACEHOLDER = "{node}"
_MAX_SOCKET_PATH_BYTES = 107  # sockaddr_un.sun_path, less the terminating NUL
_MAX_RUN_ID_CHARS = 128  # what the agent accepts as a run id: printable ASCII, 1..128


@dataclass(frozen=True, slots=True)
class BatchOptions:
    """Site settings for every job a launcher submits."""

    workdir: Path  # the job's working directory (--chdir): where the command runs
    log_dir: Path  # the job's stdout/stderr files
    partition: str = ""
    time_limit: str = ""  # sbatch --time, e.g. "04:00:00"
    exclusive: bool = True  # a training run owns its nodes
    port_base: int = 29500
    port_span: int = 1000
    extra_args: tuple[str, ...] = field(default=())  # further #SBATCH options ("--gres=gpu:8")
    # Each node's agent progress socket ("{node}": the node's name); "" turns reporting off.
    progress_socket: str = DEFAULT_PROGRESS_SOCKET


@dataclass(frozen=True, slots=True)
class BatchJob:
    """One attempt's script and where its output goes (`%j` is the job id)."""

    name: str
    script: str
    stdout: Path
    stderr: Path


def job_name(spec: RunSpec, attempt: int) -> str:
    """`<run>-a<attempt>`, with anything Slurm would mangle replaced by `_`."""
    return f"{re.sub(r'[^A-Za-z0-9._-]', '_', spec.name)[:64]}-a{attempt}"


def _no_space(label: str, value: str) -> str:
    if not value or any(ch.isspace() for ch in value):
        raise ValueError(f"{label} must be non-empty without whitespace: {value!r}")
    return value


def _problems(spec: RunSpec, placement: Placement, attempt: int,
              exclude: Sequence[str], options: BatchOptions) -> list[str]:
    nodes = placement.node_names
    problems = [f"attempt must be >= 1, not {attempt}"] if attempt < 1 else []
    if len(nodes) != spec.nodes:
        problems.append(f"placement has {len(nodes)} nodes, the spec needs {spec.nodes}")
    if len(set(nodes)) != len(nodes):
        problems.append(f"placement names a node twice: {list(nodes)}")
    for n in placement.nodes:
        if [s.local_rank for s in n.ranks] != list(range(spec.ranks_per_node)):
            problems.append(f"{n.node} holds local ranks {[s.local_rank for s in n.ranks]}, "
                            f"expected 0..{spec.ranks_per_node - 1}")
    ranks = sorted(s.rank for n in placement.nodes for s in n.ranks)
    if ranks != list(range(spec.world_size)):
        problems.append(f"placement ranks {ranks} are not 0..{spec.world_size - 1}")
    clash = sorted(set(nodes) & set(exclude))
    if clash:
        problems.append(f"excluded node(s) {clash} are in the placement")
    bad_env = sorted(k for k in spec.env if not _ENV_NAME.match(k) or k in _RESERVED_ENV)
    if bad_env:
        problems.append(f"spec env names {bad_env} are invalid or set by the launcher")
    if options.port_span < 1 or not 1024 <= options.port_base <= 65535 - options.port_span:
        problems.append(f"ports {options.port_base}+{options.port_span} leave 1024..65535")
    if options.progress_socket:
        problems += _progress_problems(spec.name, options.progress_socket, nodes)
    return problems


def _progress_problems(run: str, template: str, nodes: Sequence[str]) -> list[str]:
    problems = []
    if not template.startswith("/"):
        problems.append(f"progress_socket must be an absolute path: {template!r}")
    rest = template.replace(NODE_PLACEHOLDER, "")
    if "{" in rest or "}" in rest:
        problems.append(f"progress_socket knows only the {NODE_PLACEHOLDER} placeholder")
    if not template.isprintable():
        problems.append("progress_socket has unprintable characters")
    longest = max((len(progress_socket(template, n).encode()) for n in nodes), default=0)
    if longest > _MAX_SOCKET_PATH_BYTES:
        problems.append(f"progress_socket is {longest} bytes long, a unix socket path has at "
                        f"most {_MAX_SOCKET_PATH_BYTES}")
    if not 0 < len(run) <= _MAX_RUN_ID_CHARS or not all(" " <= ch <= "~" for ch in run):
        problems.append(f"run name {run!r} cannot be a progress run id (1..128 printable ASCII "
                        "characters); set progress_socket to '' to launch it without progress")
    return problems


def progress_socket(template: str, node: str) -> str:
    """The progress socket of the agent on `node` ("" when reporting is off)."""
    return template.replace(NODE_PLACEHOLDER, node)


def batch_script(spec: RunSpec, placement: Placement, attempt: int, exclude: Sequence[str],
                 addresses: Mapping[str, str], options: BatchOptions) -> BatchJob:
    """The script for `attempt` of `spec` on `placement`; ValueError lists every problem."""
    for name in (*placement.node_names, *exclude):
        check_node_name(name)
    problems = _problems(spec, placement, attempt, exclude, options)
    if problems:
        raise ValueError("cannot build the batch script:\n  - " + "\n  - ".join(problems))
    name = job_name(spec, attempt)
    log_dir = Path(_no_space("log_dir", str(options.log_dir)))
    stdout, stderr = log_dir / f"{name}-%j.out", log_dir / f"{name}-%j.err"
    nodes = placement.node_names
    sbatch = [f"--job-name={name}", f"--nodes={len(nodes)}",
              f"--ntasks-per-node={spec.ranks_per_node}", f"--nodelist={','.join(nodes)}",
              f"--chdir={_no_space('workdir', str(options.workdir))}",
              f"--output={stdout}", f"--error={stderr}", "--no-requeue"]
    sbatch += [f"--exclude={','.join(sorted(set(exclude)))}"] if exclude else []
    sbatch += ["--exclusive"] if options.exclusive else []
    sbatch += [f"--partition={_no_space('partition', options.partition)}"] \
        if options.partition else []
    sbatch += [f"--time={_no_space('time_limit', options.time_limit)}"] \
        if options.time_limit else []
    sbatch += [_no_space("extra sbatch option", a) for a in options.extra_args]
    master = addresses.get(nodes[0]) or nodes[0]
    env = {"TORCH_DISABLE_SHARE_RDZV_TCP_STORE": "1", "GPUFLEET_RUN": spec.name,
           "GPUFLEET_RUN_ID": spec.name, "GPUFLEET_ATTEMPT": str(attempt),
           **dict(sorted(spec.env.items())),
           "MASTER_ADDR": master, "WORLD_SIZE": str(spec.world_size)}
    lines = ["#!/bin/bash", *(f"#SBATCH {opt}" for opt in sbatch),
             f"# gpufleet run {shlex.quote(spec.name)}, attempt {attempt}; rank order: "
             + " ".join(nodes), "set -eu"]
    lines += [f"export {key}={shlex.quote(value)}" for key, value in env.items()]
    lines.append(f"export MASTER_PORT=$(( {options.port_base} + SLURM_JOB_ID % "
                 f"{options.port_span} ))")
    srun = ["srun", "--kill-on-bad-exit=1", f"--nodes={len(nodes)}",
            f"--ntasks={spec.world_size}", f"--ntasks-per-node={spec.ranks_per_node}"]
    task = _task_script(placement, options.progress_socket)
    lines.append(" ".join([*srun, "bash", "-c", shlex.quote(task),
                           "gpufleet-rank", *(shlex.quote(a) for a in _argv(spec))]))
    return BatchJob(name=name, script="\n".join(lines) + "\n", stdout=stdout, stderr=stderr)


def _argv(spec: RunSpec) -> tuple[str, ...]:
    try:
        return spec.argv()
    except (KeyError, IndexError, ValueError) as exc:
        raise ValueError(f"run command {list(spec.command)} has a bad placeholder ({exc!r}); "
                         "write literal braces as {{ and }}") from exc


def _task_script(placement: Placement, socket_template: str) -> str:
    """What each task runs before exec'ing the command: its ranks from the placement and its
    node's progress socket."""
    cases = "\n".join(
        f"  {shlex.quote(n.node)}) ranks=({' '.join(str(s.rank) for s in n.ranks)}) "
        f"progress={shlex.quote(progress_socket(socket_template, n.node))} ;;"
        for n in placement.nodes)
    return (
        'case "$SLURMD_NODENAME" in\n'
        f"{cases}\n"
        '  *) echo "gpufleet: node $SLURMD_NODENAME is not in this placement" >&2; '
        f"exit {EXIT_NOT_IN_PLACEMENT} ;;\n"
        "esac\n"
        'if [ "$SLURM_NTASKS" != "$WORLD_SIZE" ]; then\n'
        '  echo "gpufleet: Slurm started $SLURM_NTASKS tasks, the run has $WORLD_SIZE" >&2; '
        f"exit {EXIT_NOT_IN_PLACEMENT}\n"
        "fi\n"
        'export RANK="${ranks[$SLURM_LOCALID]}" LOCAL_RANK="$SLURM_LOCALID" '
        'GPUFLEET_NODE="$SLURMD_NODENAME"\n'
        'if [ -n "$progress" ] && ! [ -w "$progress" ]; then\n'
        '  echo "gpufleet: WARNING: rank $RANK cannot write the progress socket $progress on '
        '$SLURMD_NODENAME (is the agent running, and is this user in its socket group?): its '
        'steps will not reach gpufleet, whose hang detection will then stop the run" >&2\n'
        "fi\n"
        'export GPUFLEET_PROGRESS_SOCKET="$progress"\n'  # empty: the reporter is off
        'exec "$@"\n'
    )
