"""DeepSeek-V3-mini pieces in one process: routing, MoE, RoPE, causality, data, launch checks."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

if importlib.util.find_spec("torch") is None:
    pytest.skip("torch is not importable: the training example needs it", allow_module_level=True)

import torch

from examples.deepseek_v3_mini.config import ConfigError, ModelConfig
from examples.deepseek_v3_mini.data import SyntheticMarkovData
from examples.deepseek_v3_mini.model import Transformer, apply_rope, rope_tables
from examples.deepseek_v3_mini.moe import Gate, MoE
from examples.deepseek_v3_mini.parallel import (
    LaunchEnv,
    LaunchError,
    ep_groups,
    local_expert_range,
)
from examples.deepseek_v3_mini.train import main

CFG = ModelConfig()


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)


def test_config_reports_every_problem_at_once() -> None:
    with pytest.raises(ConfigError) as info:
        ModelConfig(qk_rope_head_dim=7, n_routed_experts=10, n_limited_groups=5, dropout=1.0)
    message = str(info.value)
    for fragment in (
        "qk_rope_head_dim",
        "multiple of n_expert_groups",
        "n_limited_groups",
        "dropout",
    ):
        assert fragment in message


def test_gate_routes_top_k_inside_the_limited_groups() -> None:
    gate = Gate(CFG)
    x = torch.randn(256, CFG.dim)
    weights, indices, affinity = gate(x)
    assert weights.shape == indices.shape == (256, CFG.n_activated_experts)
    torch.testing.assert_close(weights.sum(-1), torch.full((256,), CFG.route_scale))
    assert all(len(set(row.tolist())) == CFG.n_activated_experts for row in indices)
    groups = indices // CFG.experts_per_group
    assert all(len(set(row.tolist())) <= CFG.n_limited_groups for row in groups)
    assert ((affinity > 0) & (affinity < 1)).all()


def test_bias_steers_selection_but_not_the_weights() -> None:
    gate = Gate(CFG)
    x = torch.randn(64, CFG.dim)
    _, _, affinity = gate(x)
    gate.bias[5] = 100.0
    weights, indices, _ = gate(x)
    assert (indices == 5).any(dim=-1).all()
    chosen = affinity.gather(1, indices)
    torch.testing.assert_close(weights, chosen / chosen.sum(-1, keepdim=True) * CFG.route_scale)


def test_bias_update_pushes_load_towards_the_mean() -> None:
    gate = Gate(CFG)
    load = torch.tensor([10.0, 0, 0, 0, 0, 0, 0, 6])
    gate.update_bias(load)
    step = CFG.bias_update_speed
    assert gate.bias[0].item() == pytest.approx(-step)
    assert gate.bias[1].item() == pytest.approx(step)
    assert gate.bias[7].item() == pytest.approx(-step)


def test_moe_equals_the_per_token_definition() -> None:
    moe = MoE(CFG, range(CFG.n_routed_experts)).eval()
    x = torch.randn(2, 5, CFG.dim)
    out = moe(x)
    flat = x.reshape(-1, CFG.dim)
    weights, indices, _ = moe.gate(flat)
    expected = torch.stack(
        [
            moe.shared_experts(flat[t])
            + sum(
                w * moe.experts[str(int(e))](flat[t])
                for w, e in zip(weights[t], indices[t], strict=True)
            )
            for t in range(flat.size(0))
        ]
    )
    torch.testing.assert_close(out.reshape(-1, CFG.dim), expected, rtol=1e-5, atol=1e-6)
    assert int(moe.last_load.sum()) == flat.size(0) * CFG.n_activated_experts  # type: ignore[union-attr]


def test_rope_makes_scores_depend_on_relative_position_only() -> None:
    cos, sin = rope_tables(CFG)
    q = torch.randn(1, 1, 1, CFG.qk_rope_head_dim).expand(1, CFG.max_seq_len, 1, -1)
    k = torch.randn(1, 1, 1, CFG.qk_rope_head_dim).expand(1, CFG.max_seq_len, 1, -1)
    rq, rk = apply_rope(q, cos, sin)[0, :, 0], apply_rope(k, cos, sin)[0, :, 0]
    assert float(rq[9] @ rk[4]) == pytest.approx(float(rq[25] @ rk[20]), abs=1e-4)
    assert float(rq[9] @ rk[4]) != pytest.approx(float(rq[9] @ rk[8]), abs=1e-3)


def test_model_is_causal_and_keeps_only_its_expert_shard() -> None:
    model = Transformer(CFG).eval()
    tokens = torch.randint(0, CFG.vocab_size, (2, 16))
    changed = tokens.clone()
    changed[:, 10:] = (changed[:, 10:] + 1) % CFG.vocab_size
    with torch.no_grad():
        a, b = model(tokens), model(changed)
    torch.testing.assert_close(a[:, :10], b[:, :10])
    assert not torch.allclose(a[:, 10:], b[:, 10:])
    shard = Transformer(CFG, local_experts=range(4, 8))
    names = {n for n, _ in shard.named_parameters() if ".experts." in n}
    assert {n.split(".experts.")[1].split(".")[0] for n in names} == {"4", "5", "6", "7"}
    torch.manual_seed(0)
    full = Transformer(CFG)
    torch.manual_seed(0)
    shard = Transformer(CFG, local_experts=range(4, 8))
    full_params = dict(full.named_parameters())
    for name, param in shard.named_parameters():  # placement does not change initialisation
        assert torch.equal(param, full_params[name]), name


def test_data_is_a_pure_function_of_seed_step_and_rank() -> None:
    one, two = SyntheticMarkovData(3, 256, 4, 32), SyntheticMarkovData(3, 256, 4, 32)
    assert torch.equal(one.batch(5, 1), two.batch(5, 1))
    assert not torch.equal(one.batch(5, 1), one.batch(6, 1))
    assert not torch.equal(one.batch(5, 0), one.batch(5, 1))
    assert not torch.equal(one.batch(5, 1), SyntheticMarkovData(4, 256, 4, 32).batch(5, 1))
    batch = one.batch(1, 0)
    assert batch.shape == (4, 33) and one.tokens_per_batch == 128
    for row in batch:  # every next token is one of its predecessor's successors
        for prev, nxt in zip(row[:-1].tolist(), row[1:].tolist(), strict=True):
            assert nxt in one.successors[prev].tolist()
    with pytest.raises(ValueError):
        one.batch(0, 0)


def test_parallel_layout_helpers() -> None:
    assert ep_groups(4, 2) == [[0, 1], [2, 3]]
    assert ep_groups(4, 1) == [[0], [1], [2], [3]]
    assert local_expert_range(8, 2, 1) == range(4, 8)
    with pytest.raises(LaunchError, match="divide"):
        ep_groups(4, 3)
    with pytest.raises(LaunchError, match="cannot be split"):
        local_expert_range(8, 3, 0)


def test_launch_env_reports_every_problem() -> None:
    env = {"RANK": "0", "WORLD_SIZE": "2", "LOCAL_RANK": "0"}
    good = LaunchEnv.from_env({**env, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29500"})
    assert (good.rank, good.world_size, good.master_port) == (0, 2, 29500)
    with pytest.raises(LaunchError) as info:
        LaunchEnv.from_env({"RANK": "x", "WORLD_SIZE": "2", "LOCAL_RANK": "0"})
    assert "RANK must be an integer" in str(info.value) and "MASTER_ADDR" in str(info.value)
    with pytest.raises(LaunchError, match=r"RANK 2 not in \[0, 2\)"):
        LaunchEnv.from_env({**env, "RANK": "2", "MASTER_ADDR": "h", "MASTER_PORT": "1"})


@pytest.mark.parametrize(
    ("env", "extra", "message"),
    [
        ({}, [], "RANK must be an integer"),
        ({"WORLD_SIZE": "3"}, ["--ep-size", "2"], "--ep-size 2 must divide the world size 3"),
        ({}, ["--fail-rank", "4"], "--fail-rank 4 >= world size 2"),
        ({}, ["--seq-len", "500"], "--seq-len 500 > max_seq_len"),
        ({"GPUFLEET_ATTEMPT": "first"}, [], "GPUFLEET_ATTEMPT must be an integer"),
    ],
)
def test_bad_launches_exit_2_with_a_reason(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    env: dict[str, str],
    extra: list[str],
    message: str,
) -> None:
    base = {"RANK": "0", "WORLD_SIZE": "2", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1"}
    base["MASTER_PORT"] = "1"  # never reached: validation fails before any network traffic
    for name in (*base, "GPUFLEET_ATTEMPT", "GPUFLEET_PROGRESS_SOCKET"):
        monkeypatch.delenv(name, raising=False)
    if message.startswith("RANK"):
        base.pop("RANK")
    for name, value in {**base, **env}.items():
        monkeypatch.setenv(name, value)
    code = main(["--steps", "3", "--ckpt-dir", str(tmp_path / "ck"), *extra])
    assert code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "ck").exists()
