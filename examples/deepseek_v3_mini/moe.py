"""DeepSeekMoE as in DeepSeek-V3: one shared expert plus top-k routed experts.

Routing follows the V3 report and `deepseek-ai/DeepSeek-V3:inference/model.py` (`Gate`):
sigmoid affinities; a per-expert bias that only steers *selection* (auxiliary-loss-free
balancing, updated outside autograd from the global expert load); node-limited routing (pick
`n_limited_groups` expert groups by the sum of their top-2 biased scores, then top-k experts
inside them); gate weights are the unbiased affinities of the chosen experts normalised to sum
to one, times `route_scale`. V3's small complementary sequence-wise balance loss is kept.

Which rank computes which expert is not this module's business: tokens are sorted by expert
and handed to a `Dispatch`, which either runs every expert here (`local_dispatch`) or ships the
tokens to the experts' owners and back (`parallel.AllToAllDispatch`).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from examples.deepseek_v3_mini.config import ModelConfig

# (tokens sorted by expert [M, dim], tokens per global expert [E], run expert e on rows) -> [M, dim]
ExpertFn = Callable[[int, Tensor], Tensor]
Dispatch = Callable[[Tensor, Tensor, ExpertFn], Tensor]


def local_dispatch(sorted_tokens: Tensor, counts: Tensor, run_expert: ExpertFn) -> Tensor:
    """Run every expert in this process, on its contiguous slice of the sorted tokens."""
    chunks = torch.split(sorted_tokens, [int(c) for c in counts.tolist()])
    return torch.cat([run_expert(e, chunk) for e, chunk in enumerate(chunks)])


class MLP(nn.Module):
    """SwiGLU feed-forward: w2(silu(w1 x) * w3 x), as V3's dense FFN and each expert."""

    def __init__(self, dim: int, inter_dim: int) -> None:
        super().__init__()
        self.w1 = nn.Linear(dim, inter_dim, bias=False)
        self.w2 = nn.Linear(inter_dim, dim, bias=False)
        self.w3 = nn.Linear(dim, inter_dim, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.w2(F.silu(self.w1(x)) * self.w3(x))
        return out


class Gate(nn.Module):
    """V3 router: returns (weights [N, k], expert indices [N, k], affinities [N, E])."""

    bias: Tensor

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.weight = nn.Parameter(torch.empty(cfg.n_routed_experts, cfg.dim))
        nn.init.normal_(self.weight, std=cfg.dim**-0.5)
        # Selection bias of auxiliary-loss-free balancing: state, not a trained parameter.
        self.register_buffer("bias", torch.zeros(cfg.n_routed_experts), persistent=True)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        cfg = self.cfg
        affinity = torch.sigmoid(F.linear(x, self.weight))
        scores = affinity.detach() + self.bias
        if cfg.n_expert_groups > 1:
            grouped = scores.view(x.size(0), cfg.n_expert_groups, -1)
            group_scores = grouped.topk(2, dim=-1).values.sum(dim=-1)
            keep = group_scores.topk(cfg.n_limited_groups, dim=-1).indices
            dropped = torch.ones_like(group_scores, dtype=torch.bool).scatter_(1, keep, False)
            scores = grouped.masked_fill(dropped.unsqueeze(-1), float("-inf")).flatten(1)
        indices = scores.topk(cfg.n_activated_experts, dim=-1).indices
        weights = affinity.gather(1, indices)
        weights = weights / weights.sum(dim=-1, keepdim=True) * cfg.route_scale
        return weights, indices, affinity

    @torch.no_grad()
    def update_bias(self, global_load: Tensor) -> None:
        """V3's balancing step: lower the bias of overloaded experts, raise underloaded ones."""
        load = global_load.to(self.bias.dtype)
        self.bias.add_(self.cfg.bias_update_speed * torch.sign(load.mean() - load))


class MoE(nn.Module):
    """Shared expert + routed experts. `local_experts` are the global ids this rank owns."""

    def __init__(
        self, cfg: ModelConfig, local_experts: range, dispatch: Dispatch = local_dispatch
    ) -> None:
        super().__init__()
        self.cfg = cfg
        self.gate = Gate(cfg)
        # Build every expert so initialisation does not depend on the placement, then keep ours.
        built = [MLP(cfg.dim, cfg.moe_inter_dim) for _ in range(cfg.n_routed_experts)]
        self.experts = nn.ModuleDict({str(e): built[e] for e in local_experts})
        self.shared_experts = MLP(cfg.dim, cfg.n_shared_experts * cfg.moe_inter_dim)
        self.dispatch = dispatch
        self.last_load: Tensor | None = None  # tokens routed to each expert in the last forward
        self.aux_loss: Tensor | None = None

    def _run_expert(self, expert: int, rows: Tensor) -> Tensor:
        return self.experts[str(expert)](rows)  # type: ignore[no-any-return]

    def forward(self, x: Tensor) -> Tensor:
        cfg = self.cfg
        batch, seq, dim = x.shape
        flat = x.reshape(-1, dim)
        weights, indices, affinity = self.gate(flat)
        expert_of = indices.reshape(-1)
        order = torch.argsort(expert_of, stable=True)
        token_of = torch.arange(flat.size(0), device=x.device).repeat_interleave(
            cfg.n_activated_experts
        )[order]
        counts = torch.bincount(expert_of, minlength=cfg.n_routed_experts)
        routed = self.dispatch(flat[token_of], counts, self._run_expert)
        routed = routed * weights.reshape(-1)[order].unsqueeze(-1)
        out = torch.zeros_like(flat).index_add(0, token_of, routed)
        self.last_load = counts.detach()
        if self.training and cfg.seq_aux_loss_alpha > 0:
            self.aux_loss = self._sequence_balance_loss(indices, affinity, batch, seq)
        shared: Tensor = self.shared_experts(flat)
        return (out + shared).view(batch, seq, dim)

    def _sequence_balance_loss(
        self, indices: Tensor, affinity: Tensor, batch: int, seq: int
    ) -> Tensor:
        """alpha * sum_i f_i * P_i per sequence, averaged over the batch (V3 report, eq. 17-20)."""
        cfg = self.cfg
        n_exp, k = cfg.n_routed_experts, cfg.n_activated_experts
        chosen = F.one_hot(indices.view(batch, seq * k), n_exp).sum(dim=1).to(affinity.dtype)
        f = chosen * (n_exp / (k * seq))
        p = (affinity / affinity.sum(dim=-1, keepdim=True)).view(batch, seq, n_exp).mean(dim=1)
        return cfg.seq_aux_loss_alpha * (f * p).sum(dim=-1).mean()
