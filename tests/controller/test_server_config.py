"""Controller configuration (flags > env > file > defaults) and the `serve` command line."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from controller.cli import main, settings_from
from controller.config import ConfigError, ControllerConfig, is_loopback, load_config

pytestmark = pytest.mark.timeout(60)


def test_precedence_is_flag_then_env_then_file_then_default(tmp_path: Path) -> None:
    toml = tmp_path / "c.toml"
    toml.write_text('db = "from-file.db"\nlisten = "127.0.0.1:1111"\n'
                    '[controller]\nheartbeat_timeout = 45\ninsecure = true\n')
    env = {"GPUFLEET_LISTEN": "127.0.0.1:2222", "GPUFLEET_DB": "from-env.db"}
    cfg = load_config({"db": "from-flag.db"}, env, str(toml))
    assert cfg.db == "from-flag.db"
    assert cfg.listen == "127.0.0.1:2222"
    assert cfg.heartbeat_timeout == 45.0 and cfg.insecure
    assert cfg.report_interval == ControllerConfig().report_interval
    assert load_config({}, env | {"GPUFLEET_CONFIG": str(toml)}).heartbeat_timeout == 45.0


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    toml = tmp_path / "c.toml"
    toml.write_text('listen = 5\ncolour = "blue"\n')
    env = {"GPUFLEET_INSECURE": "maybe", "GPUFLEET_HEARTBEAT_TIMEOUT": "-1"}
    with pytest.raises(ConfigError) as err:
        load_config({"tls_cert": "missing.pem", "ingest_batch": 0,
                     "slurm_progress_socket": "run/progress.sock"}, env, str(toml))
    text = "\n".join(err.value.problems)
    for expected in ("listen must be a str", "unknown key 'colour'", "GPUFLEET_INSECURE",
                     "--slurm-progress-socket must be an absolute path",
                     "--heartbeat-timeout must be > 0", "--ingest-batch must be >= 1",
                     "--db is required", "missing --tls-key, --tls-ca",
                     "--tls-cert missing.pem: no such file"):
        assert expected in text, expected
    assert len(err.value.problems) >= 8


@pytest.mark.parametrize(("listen", "metrics", "ok"), [
    ("127.0.0.1:0", "", True),
    ("localhost:50051", "127.0.0.2:9400", True),
    ("[::1]:50051", "", True),
    ("0.0.0.0:50051", "", False),
    ("127.0.0.1:0", "0.0.0.0:9400", False),
    ("10.1.2.3:50051", "", False),
])
def test_insecure_is_refused_unless_every_listen_address_is_loopback(
    listen: str, metrics: str, ok: bool
) -> None:
    flags = {"listen": listen, "metrics_listen": metrics, "insecure": True, "db": "f.db"}
    if ok:
        assert load_config(flags, {}).insecure
    else:
        with pytest.raises(ConfigError, match="--insecure is refused"):
            load_config(flags, {})


def test_tls_and_insecure_exclude_each_other_and_one_is_required() -> None:
    with pytest.raises(ConfigError, match="or --insecure"):
        load_config({"db": "f.db"}, {})
    tls = {"tls_cert": "c", "tls_key": "k", "tls_ca": "a", "db": "f.db"}
    with pytest.raises(ConfigError, match="mutually exclusive"):
        load_config(tls | {"insecure": True}, {}, exists=lambda _: True)
    cfg = load_config(tls | {"listen": "0.0.0.0:50051"}, {}, exists=lambda _: True)
    assert cfg.tls_ca == "a"


def test_token_file_problems_join_the_others(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text("alice short\n")
    tokens.chmod(0o600)
    with pytest.raises(ConfigError) as err:
        load_config({"operator_token_file": str(tokens), "insecure": True}, {})
    assert any("shorter than 16" in p for p in err.value.problems)
    assert any("--db is required" in p for p in err.value.problems)


def test_settings_carry_the_tunables(tmp_path: Path) -> None:
    cfg = load_config({"db": str(tmp_path / "f.db"), "insecure": True, "ingest_linger_ms": 5.0,
                       "heartbeat_timeout": 12.0}, {})
    settings = settings_from(cfg)
    assert settings.service.batch_linger_s == 0.005
    assert settings.service.heartbeat_timeout_s == 12.0
    assert settings.service.heartbeat_check_s == 4.0
    assert settings.tls is None and settings.operator_tokens is None


def test_loopback_names() -> None:
    assert is_loopback("127.9.9.9") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("example.org")


def test_main_exits_2_listing_problems(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--listen", "nonsense", "--insecure"]) == 2
    err = capsys.readouterr().err
    assert "configuration has 2 problem(s)" in err
    assert "--listen 'nonsense' must be HOST:PORT" in err and "--db is required" in err


def test_serve_prints_its_address_and_stops_on_sigterm(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GPUFLEET_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "controller", "serve", "--listen", "127.0.0.1:0",
         "--db", str(tmp_path / "fleet.db"), "--insecure"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("listening on 127.0.0.1:"), line
        assert int(line.rsplit(":", 1)[1]) > 0
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=20)
        assert proc.returncode == 0
        assert "stopped" in out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    assert (tmp_path / "fleet.db").exists()


def test_serve_reports_a_port_in_use_and_exits_1(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code = main(["serve", "--listen", f"127.0.0.1:{port}", "--db",
                     str(tmp_path / "f.db"), "--insecure"])
    assert code == 1
    assert "cannot start" in capsys.readouterr().err
