"""Shape of the DeepSeek-V3-mini model: DeepSeek-V3's architecture at toy sizes.

The field names follow `deepseek-ai/DeepSeek-V3:inference/configs/config_671B.json`; the
defaults shrink every dimension so one training step on a CPU core takes tens of milliseconds.
For scale, the real model has dim 7168, 61 layers (3 dense), 128 heads, q_lora_rank 1536,
kv_lora_rank 512, qk_nope/rope 128/64, v 128, 256 routed + 1 shared experts, 8 active,
8 expert groups with 4 chosen per token, route_scale 2.5.
"""

from __future__ import annotations

from dataclasses import dataclass, fields


class ConfigError(ValueError):
    """An inconsistent model configuration."""


@dataclass(frozen=True, slots=True)
class ModelConfig:
    """Every size of the model; `validate()` runs on construction."""

    vocab_size: int = 256
    dim: int = 64
    n_layers: int = 4
    n_dense_layers: int = 1  # the first layers use a dense FFN, as V3's first 3
    n_heads: int = 4
    max_seq_len: int = 64
    # multi-head latent attention
    q_lora_rank: int = 32  # 0: queries are not compressed
    kv_lora_rank: int = 32
    qk_nope_head_dim: int = 16
    qk_rope_head_dim: int = 8
    v_head_dim: int = 16
    rope_theta: float = 10000.0
    # feed-forward
    inter_dim: int = 128  # dense FFN
    moe_inter_dim: int = 32  # each routed expert and (times n_shared_experts) the shared one
    n_routed_experts: int = 8
    n_shared_experts: int = 1
    n_activated_experts: int = 2
    n_expert_groups: int = 4
    n_limited_groups: int = 2  # node-limited routing: a token's experts come from this many groups
    route_scale: float = 1.0
    bias_update_speed: float = 0.001  # auxiliary-loss-free balancing; 0 disables it
    seq_aux_loss_alpha: float = 0.0001  # V3's complementary sequence-wise balance loss
    dropout: float = 0.0  # V3 uses none; > 0 makes the run consume the torch RNG

    def __post_init__(self) -> None:
        self.validate()

    @property
    def qk_head_dim(self) -> int:
        """Per-head query/key width: the non-positional part plus the decoupled RoPE part."""
        return self.qk_nope_head_dim + self.qk_rope_head_dim

    @property
    def experts_per_group(self) -> int:
        """Routed experts in each routing group."""
        return self.n_routed_experts // self.n_expert_groups

    def validate(self) -> None:
        """Raise ConfigError naming every inconsistency at once."""
        problems: list[str] = []
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                problems.append(f"{f.name} must be a number")
        if problems:
            raise ConfigError("; ".join(problems))
        positive = (
            "vocab_size", "dim", "n_layers", "n_heads", "max_seq_len", "kv_lora_rank",
            "qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim", "inter_dim", "moe_inter_dim",
            "n_routed_experts", "n_activated_experts", "n_expert_groups", "n_limited_groups",
        )  # fmt: skip
        problems += [f"{name} must be > 0" for name in positive if getattr(self, name) <= 0]
        nonneg = ("n_dense_layers", "q_lora_rank", "n_shared_experts", "bias_update_speed")
        problems += [f"{name} must be >= 0" for name in nonneg if getattr(self, name) < 0]
        if self.seq_aux_loss_alpha < 0:
            problems.append("seq_aux_loss_alpha must be >= 0")
        if self.n_dense_layers > self.n_layers:
            problems.append("n_dense_layers must be <= n_layers")
        if self.qk_rope_head_dim % 2:
            problems.append("qk_rope_head_dim must be even (RoPE rotates pairs)")
        if self.n_expert_groups > 0 and self.n_routed_experts % self.n_expert_groups:
            problems.append("n_routed_experts must be a multiple of n_expert_groups")
        if self.n_limited_groups > self.n_expert_groups:
            problems.append("n_limited_groups must be <= n_expert_groups")
        elif self.n_expert_groups > 0 and self.n_activated_experts > (
            self.n_limited_groups * max(self.n_routed_experts // self.n_expert_groups, 1)
        ):
            problems.append("n_activated_experts exceeds the experts in n_limited_groups groups")
        if self.n_expert_groups > 1 and self.experts_per_group < 2:
            problems.append("group-limited routing needs >= 2 experts per group")
        if not 0.0 <= self.dropout < 1.0:
            problems.append("dropout must be in [0, 1)")
        if self.route_scale <= 0 or self.rope_theta <= 0:
            problems.append("route_scale and rope_theta must be > 0")
        if problems:
            raise ConfigError("; ".join(problems))
