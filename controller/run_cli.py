"""`gpufleet run start|status|events|stop`: training runs (an operator CLI extension).

Exit codes as the rest of the CLI (0 ok, 3 controller unreachable, 4 refused, 5 other), plus:
`run status NAME --watch` returns when the run ends: 0 completed, 1 failed or stopped.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import grpc
import typer
from google.protobuf.json_format import MessageToDict
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table

from controller.cli_app import run_app
from controller.cli_connection import CliError
from controller.cli_session import emit_json, failures, session
from protos.gpufleet.v1 import fleet_pb2 as pb, fleet_pb2_grpc as pb_grpc

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON on stdout.")]
TERMINAL = ("completed", "failed", "stopped")
START_TIMEOUT_S = 300.0


def detail_json(d: pb.RunDetail) -> dict[str, Any]:
    """A RunDetail as JSON (field names as in the proto)."""
    return MessageToDict(d, preserving_proto_field_name=True,
                         always_print_fields_with_no_presence=True)


def render_detail(d: pb.RunDetail) -> Group:
    """Status, goodput and placement of one run (pure)."""
    r, g = d.run, d.goodput
    status = Table(title=f"run {r.name}: {r.state.upper()}", show_header=False)
    status.add_row("attempt / restarts",
                   f"{r.attempt} / {r.restarts} (budget {r.restart_budget})")
    status.add_row("step", f"{r.step} of {r.target_steps}" if r.target_steps else str(r.step))
    status.add_row("loss / step time", f"{r.loss:.4f} / {r.step_time_s * 1000:.0f} ms")
    status.add_row("ranks / nodes", f"{r.world_size} on {len(r.nodes)}: {', '.join(r.nodes)}")
    if r.reason:
        status.add_row("reason", r.reason)
    ledger = Table(title="goodput")
    for col in ("wall", "productive", "recomputed", "detection", "restart", "other", "goodput"):
        ledger.add_column(col, justify="right")
    ledger.add_row(*(f"{v:.1f} s" for v in (g.wall_s, g.productive_s, g.recomputed_s,
                                             g.detection_s, g.restart_s, g.other_s)),
                   f"{100 * g.goodput:.1f}%")
    parts: list[Any] = [status, ledger]
    if g.HasField("joules_per_step"):
        energy = Table(title="energy (NVML total-energy counters of the run's GPUs)")
        for col in ("total", "productive", "lost", "per step", "per token"):
            energy.add_column(col, justify="right")
        per_token = f"{g.joules_per_token:.3g} J" if g.HasField("joules_per_token") else "—"
        energy.add_row(f"{g.energy_j / 1000:.1f} kJ", f"{g.productive_energy_j / 1000:.1f} kJ",
                       f"{(g.energy_j - g.productive_energy_j) / 1000:.1f} kJ",
                       f"{g.joules_per_step:.0f} J", per_token)
        parts.append(energy)
    return Group(*parts)


def render_events(d: pb.RunDetail) -> Table:
    table = Table(title=f"run {d.run.name}: events")
    for col in ("time", "attempt", "kind", "node", "message"):
        table.add_column(col)
    t0 = d.events[0].at if d.events else 0.0
    for e in d.events:
        table.add_row(f"+{e.at - t0:7.2f} s", str(e.attempt), e.kind, e.node, e.message)
    return table


def _runs(channel: grpc.Channel) -> Any:
    """The admin stub for the run RPCs (generated code is untyped)."""
    return pb_grpc.FleetAdminStub(channel)  # type: ignore[no-untyped-call]


@run_app.command("start")
def start_command(ctx: typer.Context,
                  spec: Annotated[Path, typer.Argument(help="Run spec (TOML).")],
                  as_json: JsonOpt = False) -> None:
    """Admit nodes, place the run and start its ranks."""
    with failures():
        try:
            text = spec.read_text()
        except OSError as exc:
            raise CliError(f"cannot read run spec {spec}: {exc.strerror or exc}", 2) from exc
    with session(ctx) as s:
        stub = _runs(s.channel)
        detail = stub.StartRun(pb.StartRunRequest(spec_toml=text, source=str(spec)),
                               timeout=max(s.conn.timeout, START_TIMEOUT_S), metadata=s.metadata)
    if as_json:
        emit_json(detail_json(detail))
    else:
        Console().print(render_detail(detail))


@run_app.command("status")
def status_command(
    ctx: typer.Context,
    name: Annotated[str | None, typer.Argument(help="Run name (all runs when omitted).")] = None,
    watch: Annotated[bool, typer.Option("--watch", help="Follow until the run ends.")] = False,
    interval: Annotated[float, typer.Option("--interval", min=0.1)] = 1.0,
    as_json: JsonOpt = False,
) -> None:
    """A run's state, step, restarts and goodput (or every run)."""
    with session(ctx) as s:
        stub = _runs(s.channel)
        if name is None:
            runs = stub.ListRuns(pb.ListRunsRequest(), timeout=s.conn.timeout,
                                 metadata=s.metadata)
            if as_json:
                emit_json([MessageToDict(r, preserving_proto_field_name=True) for r in runs.runs])
                return
            table = Table(title="runs")
            for col in ("name", "state", "attempt", "restarts", "step", "nodes"):
                table.add_column(col)
            for r in runs.runs:
                table.add_row(r.name, r.state, str(r.attempt), str(r.restarts), str(r.step),
                              str(len(r.nodes)))
            Console().print(table)
            return

        def fetch() -> pb.RunDetail:
            got: pb.RunDetail = stub.GetRun(pb.RunRequest(name=name), timeout=s.conn.timeout,
                                            metadata=s.metadata)
            return got

        detail = fetch()
        if watch and not as_json:
            console = Console(stderr=True)
            with Live(render_detail(detail), refresh_per_second=4, console=console) as live:
                while detail.run.state not in TERMINAL:
                    time.sleep(interval)
                    detail = fetch()
                    live.update(render_detail(detail))
        elif watch:
            while detail.run.state not in TERMINAL:
                time.sleep(interval)
                detail = fetch()
    if as_json:
        emit_json(detail_json(detail))
    elif not watch:
        Console().print(render_detail(detail))
    if watch and detail.run.state != "completed":
        raise typer.Exit(1)


@run_app.command("events")
def events_command(ctx: typer.Context, name: Annotated[str, typer.Argument()],
                   as_json: JsonOpt = False) -> None:
    """The run's timeline: placement, launches, failures, stops, replacements, restarts."""
    with session(ctx) as s:
        stub = _runs(s.channel)
        detail = stub.GetRun(pb.RunRequest(name=name), timeout=s.conn.timeout,
                             metadata=s.metadata)
    if as_json:
        emit_json(detail_json(detail)["events"] if detail.events else [])
    else:
        Console().print(render_events(detail))


@run_app.command("stop")
def stop_command(ctx: typer.Context, name: Annotated[str, typer.Argument()],
                 as_json: JsonOpt = False) -> None:
    """Stop every rank of the run and release its nodes."""
    with session(ctx) as s:
        stub = _runs(s.channel)
        detail = stub.StopRun(pb.RunRequest(name=name), timeout=s.conn.timeout,
                              metadata=s.metadata)
    if as_json:
        emit_json(detail_json(detail))
    else:
        Console().print(render_detail(detail))


def register(app: typer.Typer) -> None:
    """Called by the operator CLI: the commands above are already on `run_app`."""
