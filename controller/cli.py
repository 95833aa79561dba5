"""`gpufleet-controller`: the controller's command line (a thin composition root).

    gpufleet-controller serve --listen HOST:PORT --db PATH [--metrics-listen HOST:PORT]
        [--tls-cert F --tls-key F --tls-ca F | --insecure] [--operator-token-file F]
        [--config FILE]

Prints `listening on HOST:PORT` once serving (port 0 picks a free port); SIGTERM or SIGINT
stops it gracefully. Exit codes: 0 stopped cleanly, 1 could not start, 2 configuration errors
(every one listed on stderr).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from controller.config import (
    SETTING_NAMES,
    ConfigError,
    ControllerConfig,
    env_name,
    flag_name,
    load_config,
)
from controller.extensions import build_extensions
from controller.server import (
    Controller,
    ControllerSettings,
    OperatorTokens,
    PreflightSettings,
    ServiceSettings,
    TlsFiles,
)
from controller.server.admin import AdminExtensions
from controller.server.gc_tuning import GcSettings
from controller.server.service import FleetService
from controller.store import SchemaError

PROG = "gpufleet-controller"
_HELP = {
    "listen": "gRPC listen address HOST:PORT (port 0 = any free port)",
    "db": "SQLite file holding the fleet state (created if missing)",
    "metrics_listen": "serve Prometheus /metrics on HOST:PORT",
    "tls_cert": "controller certificate (PEM)",
    "tls_key": "controller private key (PEM)",
    "tls_ca": "CA that signs agent and operator certificates (PEM)",
    "insecure": "no TLS; only allowed when every listen address is loopback",
    "operator_token_file": "file of operator bearer tokens ('NAME TOKEN' per line, mode 600)",
    "controller_id": "name this controller gives itself in Welcome",
    "report_interval": "seconds between agent reports (told to agents)",
    "heartbeat_timeout": "seconds of silence after which a node is unreachable",
    "preflight_max_age": "seconds health evidence stays fresh for preflight",
    "preflight_timeout": "seconds preflight waits for re-test answers",
    "burnin_ttl": "seconds burn-in evidence stays fresh",
    "ingest_queue": "bound of the ingest queue (messages)",
    "ingest_batch": "most messages stored in one transaction",
    "ingest_linger_ms": "how long the writer waits to fill a small batch",
    "report_retention": "seconds raw reports are kept (0 = forever); findings cited by "
                        "transitions and each node's latest health are always kept",
    "gc_freeze_interval": "seconds between freezing GC survivors (0 = leave the GC alone)",
    "gc_full_interval": "seconds between full GC collections while freezing",
    "rendezvous_host": "address ranks use to reach a run's first node (default: its hostname)",
    "run_workdir": "working directory of the training ranks the agents start",
    "slurm_sync": "mirror node lifecycle into Slurm node states (scontrol; SLURM_CONF from env)",
    "slurm_sync_interval": "seconds between full Slurm reconcile passes",
    "run_launcher": "how runs start their ranks: agent (StartRanks) or slurm (sbatch/srun)",
    "slurm_job_dir": "where the Slurm launcher writes batch scripts and job logs",
    "slurm_progress_socket": "each node's agent progress socket Slurm-launched ranks report "
                             "their steps to ({node} = the node's name); empty: they report "
                             "nothing and hang detection is off for Slurm runs",
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description="gpufleet controller")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser(
        "serve", help="run the controller",
        description="Each setting can also come from the environment (GPUFLEET_<NAME>) or "
                    "the --config TOML file; flags win over the environment, which wins over "
                    "the file.")
    serve.add_argument("--config", help="TOML config file (or GPUFLEET_CONFIG)")
    defaults = ControllerConfig()
    for name in SETTING_NAMES:
        kind = type(getattr(defaults, name))
        helptext = f"{_HELP.get(name, name)} [{env_name(name)}]"
        if kind is bool:
            serve.add_argument(flag_name(name), dest=name, action="store_const", const=True,
                               default=None, help=helptext)
        else:
            serve.add_argument(flag_name(name), dest=name, type=kind, default=None,
                               metavar=name.upper(), help=helptext)
    return parser


def settings_from(cfg: ControllerConfig) -> ControllerSettings:
    """The running settings of a validated config."""
    tls = None
    if cfg.tls_cert:
        tls = TlsFiles(Path(cfg.tls_cert), Path(cfg.tls_key), Path(cfg.tls_ca))
    tokens = None
    if cfg.operator_token_file:
        tokens = OperatorTokens.load(Path(cfg.operator_token_file))
    return ControllerSettings(
        listen=cfg.listen,
        db=Path(cfg.db),
        metrics_listen=cfg.metrics_listen or None,
        tls=tls,
        operator_tokens=tokens,
        service=ServiceSettings(
            controller_id=cfg.controller_id,
            report_interval_s=cfg.report_interval,
            heartbeat_timeout_s=cfg.heartbeat_timeout,
            heartbeat_check_s=min(5.0, cfg.heartbeat_timeout / 3),
            queue_size=cfg.ingest_queue,
            max_batch=cfg.ingest_batch,
            batch_linger_s=cfg.ingest_linger_ms / 1000.0,
            report_retention_s=cfg.report_retention,
        ),
        preflight=PreflightSettings(
            max_age_s=cfg.preflight_max_age,
            burnin_ttl_s=cfg.burnin_ttl,
            timeout_s=cfg.preflight_timeout,
        ),
        gc=GcSettings(cfg.gc_freeze_interval, cfg.gc_full_interval),
    )


async def serve(settings: ControllerSettings,
                extend: Callable[[FleetService], AdminExtensions] | None = None) -> int:
    """Run a controller until SIGTERM/SIGINT; return the exit code."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):  # before anyone can learn our address
        loop.add_signal_handler(sig, stop.set)
    controller = Controller(settings, extend=extend)
    try:
        await controller.start()
    except (RuntimeError, OSError, SchemaError, ValueError) as err:
        print(f"{PROG}: cannot start: {err}", file=sys.stderr)
        return 1
    print(f"listening on {controller.address}", flush=True)
    if controller.metrics_server is not None:
        ms = controller.metrics_server
        print(f"metrics on http://{ms.host}:{ms.port}/metrics", flush=True)
    try:
        await stop.wait()
    finally:
        await controller.stop(grace_s=5.0)
    print("stopped", flush=True)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """The `gpufleet-controller` entry point."""
    args = _parser().parse_args(argv)
    flags = {name: getattr(args, name) for name in SETTING_NAMES}
    try:
        cfg = load_config(flags, os.environ, args.config)
        settings = settings_from(cfg)
    except ConfigError as err:
        print(f"{PROG}: configuration has {len(err.problems)} problem(s):", file=sys.stderr)
        for problem in err.problems:
            print(f"  - {problem}", file=sys.stderr)
        return 2
    except (OSError, ValueError) as err:
        print(f"{PROG}: {err}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    extend = build_extensions(settings.preflight, rendezvous_host=cfg.rendezvous_host or None,
                              run_workdir=cfg.run_workdir,
                              slurm_sync_s=cfg.slurm_sync_interval if cfg.slurm_sync else None,
                              slurm_job_dir=(Path(cfg.slurm_job_dir)
                                             if cfg.run_launcher == "slurm" else None),
                              slurm_progress_socket=cfg.slurm_progress_socket)
    return asyncio.run(serve(settings, extend))


if __name__ == "__main__":
    sys.exit(main())
