"""DeepSeek-V3-mini: multi-head latent attention + DeepSeekMoE, first layer(s) dense.

Follows `deepseek-ai/DeepSeek-V3:inference/model.py` in the training ("naive") form:

- MLA: queries go through a low-rank bottleneck (`wq_a` -> RMSNorm -> `wq_b`); keys and values
  share one compressed latent `c_kv` (`wkv_a` -> RMSNorm -> `wkv_b`, which expands it into the
  per-head non-positional key part and the value), and positional information rides on a
  *decoupled* RoPE key `k_pe` of `qk_rope_head_dim`, computed from the input and shared by every
  head. Scores use the concatenation [q_nope, q_pe] . [k_nope, k_pe].
- FFN: the first `n_dense_layers` blocks use a dense SwiGLU, the rest DeepSeekMoE (`moe.py`).
- Pre-norm residual blocks with RMSNorm, untied embedding and output head.

Multi-token prediction (V3's MTP module) is left out: it changes nothing a supervisor sees.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from examples.deepseek_v3_mini.config import ModelConfig
from examples.deepseek_v3_mini.moe import MLP, Dispatch, MoE, local_dispatch


class RMSNorm(nn.Module):
    """Root-mean-square layer norm with a learned scale."""

    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        return F.rms_norm(x, (x.size(-1),), self.weight, self.eps)


def rope_tables(cfg: ModelConfig) -> tuple[Tensor, Tensor]:
    """cos and sin tables [max_seq_len, qk_rope_head_dim / 2] for rotary embeddings."""
    half = cfg.qk_rope_head_dim // 2
    inv_freq = 1.0 / (cfg.rope_theta ** (torch.arange(half, dtype=torch.float32) / half))
    angles = torch.outer(torch.arange(cfg.max_seq_len, dtype=torch.float32), inv_freq)
    return torch.cos(angles), torch.sin(angles)


def apply_rope(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate interleaved pairs of the last dim of x [b, s, h, d] by position (V3's layout)."""
    pairs = x.float().reshape(*x.shape[:-1], -1, 2)
    x0, x1 = pairs[..., 0], pairs[..., 1]
    c, s = cos[None, :, None, :], sin[None, :, None, :]
    rotated = torch.stack((x0 * c - x1 * s, x0 * s + x1 * c), dim=-1)
    return rotated.flatten(-2).type_as(x)


class MLA(nn.Module):
    """Multi-head latent attention with a low-rank KV latent and a decoupled RoPE key."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        h = cfg.n_heads
        if cfg.q_lora_rank > 0:
            self.wq_a = nn.Linear(cfg.dim, cfg.q_lora_rank, bias=False)
            self.q_norm = RMSNorm(cfg.q_lora_rank)
            self.wq_b = nn.Linear(cfg.q_lora_rank, h * cfg.qk_head_dim, bias=False)
        else:
            self.wq = nn.Linear(cfg.dim, h * cfg.qk_head_dim, bias=False)
        self.wkv_a = nn.Linear(cfg.dim, cfg.kv_lora_rank + cfg.qk_rope_head_dim, bias=False)
        self.kv_norm = RMSNorm(cfg.kv_lora_rank)
        self.wkv_b = nn.Linear(
            cfg.kv_lora_rank, h * (cfg.qk_nope_head_dim + cfg.v_head_dim), bias=False
        )
        self.wo = nn.Linear(h * cfg.v_head_dim, cfg.dim, bias=False)
        self.softmax_scale = cfg.qk_head_dim**-0.5

    def forward(self, x: Tensor, cos: Tensor, sin: Tensor, mask: Tensor) -> Tensor:
        cfg = self.cfg
        b, s, _ = x.shape
        h = cfg.n_heads
        q = self.wq_b(self.q_norm(self.wq_a(x))) if cfg.q_lora_rank > 0 else self.wq(x)
        q = q.view(b, s, h, cfg.qk_head_dim)
        q_nope, q_pe = q.split([cfg.qk_nope_head_dim, cfg.qk_rope_head_dim], dim=-1)
        q = torch.cat([q_nope, apply_rope(q_pe, cos, sin)], dim=-1)
        kv_latent, k_pe = self.wkv_a(x).split([cfg.kv_lora_rank, cfg.qk_rope_head_dim], dim=-1)
        k_pe = apply_rope(k_pe.unsqueeze(2), cos, sin)  # one RoPE key shared by all heads
        kv = self.wkv_b(self.kv_norm(kv_latent)).view(
            b, s, h, cfg.qk_nope_head_dim + cfg.v_head_dim
        )
        k_nope, v = kv.split([cfg.qk_nope_head_dim, cfg.v_head_dim], dim=-1)
        k = torch.cat([k_nope, k_pe.expand(-1, -1, h, -1)], dim=-1)
        scores = torch.einsum("bshd,bthd->bsht", q, k) * self.softmax_scale + mask
        probs = scores.softmax(dim=-1, dtype=torch.float32).type_as(x)
        out = torch.einsum("bsht,bthd->bshd", probs, v)
        return self.wo(out.flatten(2))  # type: ignore[no-any-return]


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(norm(x)), then x + ffn(norm(x))."""

    def __init__(
        self, cfg: ModelConfig, layer: int, local_experts: range, dispatch: Dispatch
    ) -> None:
        super().__init__()
        self.attn_norm = RMSNorm(cfg.dim)
        self.attn = MLA(cfg)
        self.ffn_norm = RMSNorm(cfg.dim)
        self.ffn: nn.Module = (
            MLP(cfg.dim, cfg.inter_dim)
            if layer < cfg.n_dense_layers
            else MoE(cfg, local_experts, dispatch)
        )
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: Tensor, cos: Tensor, sin: Tensor, mask: Tensor) -> Tensor:
        x = x + self.dropout(self.attn(self.attn_norm(x), cos, sin, mask))
        return x + self.dropout(self.ffn(self.ffn_norm(x)))  # type: ignore[no-any-return]


class Transformer(nn.Module):
    """The whole model; `loss(tokens)` is next-token cross entropy plus the MoE balance loss."""

    rope_cos: Tensor
    rope_sin: Tensor

    def __init__(
        self,
        cfg: ModelConfig,
        local_experts: range | None = None,
        dispatch: Dispatch = local_dispatch,
    ) -> None:
        super().__init__()
        self.cfg = cfg
        owned = range(cfg.n_routed_experts) if local_experts is None else local_experts
        self.embed = nn.Embedding(cfg.vocab_size, cfg.dim)
        self.layers = nn.ModuleList(
            Block(cfg, layer, owned, dispatch) for layer in range(cfg.n_layers)
        )
        self.norm = RMSNorm(cfg.dim)
        self.head = nn.Linear(cfg.dim, cfg.vocab_size, bias=False)
        cos, sin = rope_tables(cfg)
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)

    def moe_layers(self) -> list[MoE]:
        """The MoE blocks' FFNs, in layer order."""
        return [module for module in self.modules() if isinstance(module, MoE)]

    def forward(self, tokens: Tensor) -> Tensor:
        """Logits [b, s, vocab] for token ids [b, s]."""
        seq = tokens.size(1)
        if seq > self.cfg.max_seq_len:
            raise ValueError(f"sequence length {seq} > max_seq_len {self.cfg.max_seq_len}")
        cos, sin = self.rope_cos[:seq], self.rope_sin[:seq]
        mask = torch.full((seq, seq), -math.inf, device=tokens.device).triu_(1)[:, None, :]
        x = self.embed(tokens)
        for block in self.layers:
            x = block(x, cos, sin, mask)
        return self.head(self.norm(x))  # type: ignore[no-any-return]

    def loss(self, tokens: Tensor) -> tuple[Tensor, Tensor]:
        """(training loss, language-model loss) for a batch of token ids [b, s + 1]."""
        logits = self(tokens[:, :-1])
        lm = F.cross_entropy(logits.flatten(0, 1).float(), tokens[:, 1:].flatten())
        aux = [m.aux_loss for m in self.moe_layers() if m.aux_loss is not None]
        total = lm + torch.stack(aux).sum() if aux and self.training else lm
        return total, lm.detach()
