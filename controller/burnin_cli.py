"""`gpufleet burnin`: NCCL/gloo all-reduce burn-in through the controller (a CLI extension).

    gpufleet burnin [--all | NODE...] [--sizes 1M,16M] [--iters N] [--timeout S]
                    [--multi-node] [--cross-domain] [--ranks-per-node N] [--repeats N]
                    [--max-parallel N] [--option NODE:key=value]... [--json]

Live progress goes to stderr (terminals only); stdout gets a table of bus bandwidth per node
and per multi-node group (an NVLink domain `domain:<id>`; with `--cross-domain` also pairs
across domains over the scale-out rails, `pair:<a>+<b>`) — one column per message size, the
judged value, the cohort median — with failures and outliers in red, or with `--json` one
object:
`{"nodes": [{"node", "passed", "severity", "check", "busbw_gbps", "cohort_median_gbps",
"message", "sizes": [...]}], "groups": [...], "notes": [...]}`.

Exit codes as the rest of the CLI, plus 1 when any burn-in failed (or a named node could not
be burned in: not registered, not connected, allocated, ...).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Annotated, Any, Protocol

import grpc
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from controller.cli_connection import (
    EXIT_REJECTED,
    EXIT_USAGE,
    CliError,
    Metadata,
    follow_stream,
)
from controller.cli_format import severity_name
from controller.cli_session import emit_json, failures, session
from protos.gpufleet.v1 import fleet_pb2 as pb, fleet_pb2_grpc as pb_grpc

SKIPPED = "burnin_skipped"
JsonDict = dict[str, Any]


class BurninCall(Protocol):
    """The server stream of a Burnin call."""

    def __iter__(self) -> Iterator[pb.BurninUpdate]: ...

    def cancel(self) -> bool: ...


class BurninApi(Protocol):
    """The one FleetAdmin call this command makes (the generated stub, typed)."""

    def Burnin(
        self, request: pb.BurninRequest, *, timeout: float | None, metadata: Metadata
    ) -> BurninCall: ...


_stub: Callable[[grpc.Channel], BurninApi] = pb_grpc.FleetAdminStub


# ---------------------------------------------------------------- pure: arguments


def parse_node_options(items: Sequence[str]) -> dict[str, str]:
    """`--option NODE:key=value` (repeatable) -> the request's node_options "k=v;k=v"."""
    out: dict[str, list[str]] = {}
    for item in items:
        node, sep, option = item.partition(":")
        if not sep or not node.strip() or "=" not in option:
            raise ValueError(f"--option {item!r}: expected NODE:key=value")
        out.setdefault(node.strip(), []).append(option.strip())
    return {node: ";".join(options) for node, options in out.items()}


# ---------------------------------------------------------------- pure: rendering


def size_label(n: int) -> str:
    """Bytes as a short binary size: 1048576 -> '1M'."""
    for unit, scale in (("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)):
        if n >= scale and n % scale == 0:
            return f"{n // scale}{unit}"
    return f"{n}B"


def sizes_json(sizes: Iterable[pb.BurnInSize]) -> list[JsonDict]:
    """Every measurement (a repeated size appears once per repeat)."""
    return [{"bytes": s.bytes, "time_us": s.time_us, "algbw_gbps": s.algbw_gbps,
             "busbw_gbps": s.busbw_gbps, "wrong": s.wrong} for s in sizes]


def result_json(r: pb.BurninNodeResult) -> JsonDict:
    """One node's or group's judged burn-in."""
    return {
        "node": r.node, "members": list(r.members), "passed": r.passed,
        "severity": severity_name(r.severity), "check": r.check,
        "busbw_gbps": r.busbw_gbps,
        "cohort_median_gbps": r.cohort_median_gbps or None,
        "threshold_gbps": r.threshold_gbps or None, "message": r.message,
        "backend": r.backend, "duration_s": r.duration_s, "evidence_id": r.evidence_id,
        "sizes": sizes_json(r.sizes),
    }


def report_json(report: pb.BurninReport) -> JsonDict:
    """`gpufleet burnin --json`."""
    return {"nodes": [result_json(r) for r in report.nodes],
            "groups": [result_json(r) for r in report.groups],
            "notes": list(report.notes)}


def busbw_by_size(r: pb.BurninNodeResult) -> dict[int, float]:
    """Bus bandwidth per distinct size (the median of a repeated size's measurements)."""
    seen: dict[int, list[float]] = {}
    for s in r.sizes:
        seen.setdefault(s.bytes, []).append(s.busbw_gbps)
    return {size: statistics.median(values) for size, values in seen.items()}


def _gbps(value: float) -> str:
    return f"{value:.3g}" if value else "-"


def _result_cell(r: pb.BurninNodeResult) -> Text:
    if r.passed:
        return Text("passed", style="green")
    if r.check == SKIPPED:
        return Text("skipped", style="magenta")
    return Text("outlier" if r.check == "burnin_outlier" else "FAILED", style="bold red")


def report_table(report: pb.BurninReport) -> Table:
    """Bus bandwidth (GB/s) per node and group: a column per size, then the judged value next
    to its cohort median; failures and outliers in red with their message."""
    rows = [*report.nodes, *report.groups]
    sizes = sorted({s.bytes for r in rows for s in r.sizes})
    table = Table(title="all-reduce burn-in: bus bandwidth (GB/s)", title_justify="left")
    table.add_column("NODE / GROUP")
    table.add_column("RESULT")
    for size in sizes:
        table.add_column(size_label(size), justify="right")
    for column in ("BUSBW", "COHORT MEDIAN", "MESSAGE"):
        table.add_column(column, justify="right" if column != "MESSAGE" else "left")
    for r in rows:
        per_size = busbw_by_size(r)
        style = "" if r.passed else "red"
        label = r.node if len(r.members) <= 1 else f"{r.node} ({len(r.members)} nodes)"
        table.add_row(
            Text(label, style=style), _result_cell(r),
            *(_gbps(per_size.get(size, 0.0)) for size in sizes),
            Text(_gbps(r.busbw_gbps), style="bold red" if r.check == "burnin_outlier" else ""),
            _gbps(r.cohort_median_gbps), "" if r.passed else r.message,
        )
    failed = [r for r in rows if not r.passed]
    table.caption = (f"{len(rows) - len(failed)} passed, {len(failed)} not"
                     + "".join(f"\nnote: {n}" for n in report.notes))
    return table


def failed_names(report: pb.BurninReport, named: bool) -> list[str]:
    """What makes the command exit 1: failed burn-ins, and skipped nodes that were named."""
    return [r.node for r in [*report.nodes, *report.groups]
            if not r.passed and (r.check != SKIPPED or named)]


# ---------------------------------------------------------------- progress


class BurninProgressView:
    """A progress bar per pass (single-node, multi-node, cross-domain), fed with
    PreflightProgress."""

    def __init__(self, console: Console) -> None:
        self._progress = Progress(
            TextColumn("{task.description:<12}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[note]}"), TimeElapsedColumn(),
            console=console, transient=False)
        self._tasks: dict[str, Any] = {}

    def __enter__(self) -> BurninProgressView:
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    def update(self, message: pb.PreflightProgress) -> None:
        """Show a pass's counts; the note names the node or group that just finished."""
        task = self._tasks.get(message.phase)
        if task is None:
            task = self._tasks[message.phase] = self._progress.add_task(
                message.phase, total=message.total, note="")
        self._progress.update(task, total=message.total, completed=message.done,
                              note=message.node and f"done: {message.node}")
        self._progress.refresh()


def follow(call: BurninCall, show_progress: bool) -> pb.BurninReport:
    """Follow a Burnin stream to its report, feeding progress bars on stderr."""
    report: pb.BurninReport = follow_stream(call, BurninProgressView, show_progress, "burn-in")
    return report


# ---------------------------------------------------------------- the command


def burnin_command(
    ctx: typer.Context,
    nodes: Annotated[list[str] | None, typer.Argument(help="Nodes to burn in.")] = None,
    all_nodes: Annotated[bool, typer.Option("--all", help="Every node.")] = False,
    sizes: Annotated[str, typer.Option(
        help="Message sizes: a list (1M,16M,64M) or a doubling range (1M:1G); "
             "default: the controller's.")] = "",
    iters: Annotated[int, typer.Option(min=0, help="Timed iterations per size; 0 = default.")] = 0,
    warmup: Annotated[int, typer.Option(min=0, help="Warm-up iterations; 0 = default.")] = 0,
    timeout: Annotated[float, typer.Option(
        min=0, help="Seconds a burn-in may take before its workers are killed; 0 = default.")
    ] = 0.0,
    multi_node: Annotated[bool, typer.Option(
        "--multi-node", help="Then burn in each NVLink domain's nodes together.")] = False,
    cross_domain: Annotated[bool, typer.Option(
        "--cross-domain", help="Then (implies --multi-node) pair nodes across NVLink domains "
                               "over the scale-out rails, each rank on its own NIC rail.")
    ] = False,
    ranks_per_node: Annotated[int, typer.Option(
        min=0, help="Ranks per node; 0 = one per GPU.")] = 0,
    repeats: Annotated[int, typer.Option(
        min=0, help="Measure the largest size this often and judge the median.")] = 0,
    max_parallel: Annotated[int, typer.Option(
        min=0, help="At most this many burn-ins at once; 0 = all at once.")] = 0,
    port: Annotated[int, typer.Option(
        min=0, max=65535, help="First rendezvous port of multi-node groups; 0 = default.")
    ] = 0,
    option: Annotated[list[str] | None, typer.Option(
        "--option", help="Worker option for one node, NODE:key=value (test knobs such as "
                         "slowdown=4 or hang=1); repeatable.")] = None,
    progress: Annotated[bool, typer.Option(help="Live progress on stderr (terminals).")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON on stdout.")] = False,
) -> None:
    """All-reduce burn-in: bus bandwidth per node (and NVLink domain), judged against the
    SKU floor and the cohort, stored as evidence for `preflight --burnin`.

    Exits 1 when any burn-in failed.
    """
    names = list(nodes or [])
    with failures():
        if all_nodes == bool(names):
            raise CliError("name the nodes to burn in, or give --all (not both)", EXIT_USAGE)
        try:
            node_options = parse_node_options(option or [])
        except ValueError as err:
            raise CliError(str(err), EXIT_USAGE) from None
    request = pb.BurninRequest(
        nodes=names, all=all_nodes, sizes=sizes, iters=iters, warmup_iters=warmup,
        timeout_s=timeout, multi_node=multi_node, node_options=node_options,
        ranks_per_node=ranks_per_node, max_parallel=max_parallel, master_port=port,
        repeats=repeats, cross_domain=cross_domain)
    with session(ctx) as s:
        # the controller bounds every pass by the burn-in timeout: the stream stays open
        report = follow(_stub(s.channel).Burnin(request, timeout=None, metadata=s.metadata),
                        progress)
    if as_json:
        emit_json(report_json(report))
    else:
        Console(soft_wrap=False).print(report_table(report))
    failed = failed_names(report, named=bool(names))
    if failed:
        shown = ", ".join(failed[:5]) + (", ..." if len(failed) > 5 else "")
        typer.echo(f"gpufleet: {len(failed)} burn-in(s) failed: {shown}", err=True)
        raise typer.Exit(EXIT_REJECTED)


def register(app: typer.Typer) -> None:
    """Add `gpufleet burnin` to the operator CLI."""
    app.command("burnin")(burnin_command)
