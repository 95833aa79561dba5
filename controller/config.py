"""`gpufleet-controller serve` configuration: flags > environment > TOML file > defaults.

Every setting has a flag `--NAME-WITH-DASHES`, an environment variable `GPUFLEET_NAME` and a
TOML key `name` (top level or under `[controller]`). Loading applies the sources in order of
precedence, then validates everything and raises one ConfigError listing every problem.
`--insecure` is refused unless every listen address is loopback.
"""

from __future__ import annotations

import ipaddress
import math
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from controller.server.security import OperatorTokens

ENV_PREFIX = "GPUFLEET_"


class ConfigError(ValueError):
    """The configuration has problems; `problems` lists every one."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class ControllerConfig:
    """Resolved controller settings (plain values; see `controller.cli` for their use)."""

    listen: str = "127.0.0.1:50051"
    db: str = ""
    metrics_listen: str = ""
    tls_cert: str = ""
    tls_key: str = ""
    tls_ca: str = ""
    insecure: bool = False
    operator_token_file: str = ""
    controller_id: str = "gpufleet-controller"
    report_interval: float = 1.0
    heartbeat_timeout: float = 30.0
    preflight_max_age: float = 300.0
    preflight_timeout: float = 60.0
    burnin_ttl: float = 6 * 3600.0
    ingest_queue: int = 8192
    ingest_batch: int = 1024
    ingest_linger_ms: float = 2.0
    report_retention: float = 3600.0
    gc_freeze_interval: float = 10.0
    gc_full_interval: float = 1800.0
    rendezvous_host: str = ""
    run_workdir: str = ""
    slurm_sync: bool = False
    slurm_sync_interval: float = 30.0
    run_launcher: str = "agent"
    slurm_job_dir: str = ""
    slurm_progress_socket: str = "/run/gpufleet-agent/progress.sock"


SETTING_NAMES: tuple[str, ...] = tuple(f.name for f in fields(ControllerConfig))
_TYPES: dict[str, type] = {f.name: type(getattr(ControllerConfig(), f.name))
                           for f in fields(ControllerConfig)}


def flag_name(name: str) -> str:
    """The command-line flag of a setting."""
    return "--" + name.replace("_", "-")


def env_name(name: str) -> str:
    """The environment variable of a setting."""
    return ENV_PREFIX + name.upper()


def _parse_text(name: str, text: str, where: str, problems: list[str]) -> Any:
    kind = _TYPES[name]
    try:
        if kind is bool:
            word = text.strip().lower()
            if word in ("1", "true", "yes", "on"):
                return True
            if word in ("0", "false", "no", "off", ""):
                return False
            raise ValueError(f"expected true or false, got {text!r}")
        if kind is int:
            return int(text)
        if kind is float:
            return float(text)
        return text
    except ValueError as err:
        problems.append(f"{where}: {err}")
        return None


def _from_toml(path: Path, problems: list[str]) -> dict[str, Any]:
    try:
        data = tomllib.loads(path.read_text())
    except OSError as err:
        problems.append(f"config file {path}: {err.strerror or err}")
        return {}
    except tomllib.TOMLDecodeError as err:
        problems.append(f"config file {path}: {err}")
        return {}
    section = data.pop("controller", {})
    if not isinstance(section, dict):
        problems.append(f"config file {path}: [controller] must be a table")
        section = {}
    out: dict[str, Any] = {}
    for key, value in {**data, **section}.items():
        if key not in _TYPES:
            problems.append(f"config file {path}: unknown key {key!r}")
            continue
        kind = _TYPES[key]
        ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value, ok = float(value), True
        if not ok:
            problems.append(f"config file {path}: {key} must be a {kind.__name__}, "
                            f"got {type(value).__name__}")
            continue
        out[key] = value
    return out


def is_loopback(host: str) -> bool:
    """Whether `host` names only this machine ("localhost", 127.0.0.0/8, ::1)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _host_port(value: str, what: str, problems: list[str]) -> str | None:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        problems.append(f"{what} {value!r} must be HOST:PORT (port 0 picks a free one)")
        return None
    return host.strip("[]")


def _validate(cfg: ControllerConfig, problems: list[str],
              exists: Callable[[str], bool]) -> None:
    hosts: list[tuple[str, str]] = []
    host = _host_port(cfg.listen, "--listen", problems)
    if host is not None:
        hosts.append(("--listen", host))
    if cfg.metrics_listen:
        host = _host_port(cfg.metrics_listen, "--metrics-listen", problems)
        if host is not None:
            hosts.append(("--metrics-listen", host))
    if not cfg.db:
        problems.append("--db is required (the SQLite file of the fleet state)")
    tls = {"--tls-cert": cfg.tls_cert, "--tls-key": cfg.tls_key, "--tls-ca": cfg.tls_ca}
    given = [flag for flag, value in tls.items() if value]
    if given and len(given) < 3:
        missing = [flag for flag in tls if flag not in given]
        problems.append(
            f"TLS needs --tls-cert, --tls-key and --tls-ca; missing {', '.join(missing)}"
        )
    for flag, value in tls.items():
        if value and not exists(value):
            problems.append(f"{flag} {value}: no such file")
    if cfg.insecure and given:
        problems.append("--insecure and --tls-* are mutually exclusive")
    if not cfg.insecure and not given:
        problems.append("give --tls-cert/--tls-key/--tls-ca, or --insecure for loopback-only use")
    if cfg.insecure:
        for flag, host in hosts:
            if not is_loopback(host):
                problems.append(f"--insecure is refused: {flag} host {host!r} is not loopback")
    if cfg.operator_token_file:
        if not exists(cfg.operator_token_file):
            problems.append(f"--operator-token-file {cfg.operator_token_file}: no such file")
        else:
            try:
                OperatorTokens.load(Path(cfg.operator_token_file))
            except (OSError, ValueError) as err:
                problems.append(f"--operator-token-file: {err}")
    for name in ("report_interval", "heartbeat_timeout", "preflight_max_age",
                 "preflight_timeout", "burnin_ttl", "slurm_sync_interval"):
        value = getattr(cfg, name)
        if not (math.isfinite(value) and value > 0):
            problems.append(f"{flag_name(name)} must be > 0 (got {value})")
    for name in ("ingest_queue", "ingest_batch"):
        if getattr(cfg, name) < 1:
            problems.append(f"{flag_name(name)} must be >= 1 (got {getattr(cfg, name)})")
    for name in ("gc_freeze_interval", "gc_full_interval", "report_retention"):
        value = getattr(cfg, name)
        if not (math.isfinite(value) and value >= 0):
            problems.append(f"{flag_name(name)} must be >= 0, 0 = off (got {value})")
    if cfg.run_launcher not in ("agent", "slurm"):
        problems.append(f"--run-launcher must be agent or slurm (got {cfg.run_launcher!r})")
    if cfg.run_launcher == "slurm" and not cfg.slurm_job_dir:
        problems.append("--run-launcher slurm needs --slurm-job-dir (batch scripts and logs)")
    if cfg.slurm_progress_socket and not cfg.slurm_progress_socket.startswith("/"):
        problems.append("--slurm-progress-socket must be an absolute path, or empty for none "
                        f"(got {cfg.slurm_progress_socket!r})")
    if not (math.isfinite(cfg.ingest_linger_ms) and 0 <= cfg.ingest_linger_ms <= 1000):
        problems.append(f"--ingest-linger-ms must be 0..1000 (got {cfg.ingest_linger_ms})")


def load_config(
    flags: Mapping[str, Any],
    env: Mapping[str, str],
    config_file: str | None = None,
    *,
    exists: Callable[[str], bool] = lambda p: Path(p).is_file(),
) -> ControllerConfig:
    """Resolve settings from flags (None = not given), env and the TOML file; validate all.

    The config file comes from `config_file` (the --config flag) or GPUFLEET_CONFIG.
    Raises ConfigError with every problem found.
    """
    problems: list[str] = []
    for key in flags:
        if key not in _TYPES:
            problems.append(f"unknown setting {key!r}")
    values: dict[str, Any] = {}
    path = config_file or env.get(ENV_PREFIX + "CONFIG") or None
    if path:
        values.update(_from_toml(Path(path), problems))
    for name in SETTING_NAMES:
        text = env.get(env_name(name))
        if text is not None:
            parsed = _parse_text(name, text, env_name(name), problems)
            if parsed is not None:
                values[name] = parsed
    for name, value in flags.items():
        if value is not None and name in _TYPES:
            values[name] = value
    cfg = ControllerConfig(**values)
    _validate(cfg, problems, exists)
    if problems:
        raise ConfigError(problems)
    return cfg
