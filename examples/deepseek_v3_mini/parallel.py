"""Process groups, expert parallelism and gradient synchronisation for DeepSeek-V3-mini.

Every rank is a data-parallel rank: it trains on its own micro-batch. Experts are additionally
sharded over expert-parallel (EP) groups of `ep_size` consecutive ranks: EP group g is ranks
[g*ep_size, (g+1)*ep_size) and its rank j owns routed experts
[j*E/ep_size, (j+1)*E/ep_size). Tokens travel to their experts' owners and back with two
all-to-alls per MoE layer (`AllToAllDispatch`). Ranks holding the same expert shard in
different EP groups form that shard's expert-data-parallel group.

Placement concern (the controller's, not this module's): all-to-all traffic is heavy, so an EP
group must sit inside one NVLink domain; the contiguous-rank layout here lets the placer map an
EP group to consecutive slots in one domain. gloo (CPU) and NCCL (CUDA) both implement
`all_to_all_single` in torch 2.13, so the same code path runs on both.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

import torch
import torch.distributed as dist
from torch import Tensor

from examples.deepseek_v3_mini.moe import ExpertFn


class LaunchError(ValueError):
    """The launch environment or the parallel layout is unusable."""


@dataclass(frozen=True, slots=True)
class LaunchEnv:
    """The standard launch variables every rank needs."""

    rank: int
    world_size: int
    local_rank: int
    master_addr: str
    master_port: int

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> LaunchEnv:
        """Read RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT; report every problem."""
        problems, values = [], {}
        for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_PORT"):
            raw = environ.get(name, "")
            try:
                values[name] = int(raw)
            except ValueError:
                problems.append(f"{name} must be an integer (got {raw!r})")
        addr = environ.get("MASTER_ADDR", "")
        if not addr:
            problems.append("MASTER_ADDR is not set")
        if not problems:
            if values["WORLD_SIZE"] < 1:
                problems.append("WORLD_SIZE must be >= 1")
            elif not 0 <= values["RANK"] < values["WORLD_SIZE"]:
                problems.append(f"RANK {values['RANK']} not in [0, {values['WORLD_SIZE']})")
            if values["LOCAL_RANK"] < 0:
                problems.append("LOCAL_RANK must be >= 0")
            if not 0 < values["MASTER_PORT"] < 65536:
                problems.append(f"MASTER_PORT {values['MASTER_PORT']} not in [1, 65535]")
        if problems:
            raise LaunchError("bad launch environment: " + "; ".join(problems))
        return cls(
            values["RANK"], values["WORLD_SIZE"], values["LOCAL_RANK"], addr, values["MASTER_PORT"]
        )


def ep_groups(world_size: int, ep_size: int) -> list[list[int]]:
    """The EP groups' ranks: consecutive blocks of `ep_size` (raises LaunchError if uneven)."""
    if ep_size < 1 or world_size % ep_size:
        raise LaunchError(f"--ep-size {ep_size} must divide the world size {world_size}")
    return [list(range(g, g + ep_size)) for g in range(0, world_size, ep_size)]


def local_expert_range(n_experts: int, ep_size: int, ep_rank: int) -> range:
    """The global ids of the routed experts that EP rank `ep_rank` owns."""
    if n_experts % ep_size:
        raise LaunchError(f"{n_experts} routed experts cannot be split over --ep-size {ep_size}")
    per_rank = n_experts // ep_size
    return range(ep_rank * per_rank, (ep_rank + 1) * per_rank)


@dataclass(frozen=True, slots=True)
class Parallel:
    """This rank's place in the job: device, world, and its EP and expert-DP groups."""

    env: LaunchEnv
    device: torch.device
    backend: str
    ep_size: int
    ep_group: Any  # ProcessGroup | None (None when ep_size == 1)
    expert_dp_group: Any  # ProcessGroup | None (None when it would be the world)

    @property
    def ep_rank(self) -> int:
        """This rank's index inside its EP group."""
        return self.env.rank % self.ep_size


def _is_loopback(addr: str) -> bool:
    try:
        return ipaddress.ip_address(addr).is_loopback
    except ValueError:
        return addr == "localhost"


def _store(env: LaunchEnv, timeout: datetime.timedelta) -> Any:
    """The rendezvous store. Rank 0 listens on MASTER_ADDR only (torch's default is every
    interface), which is also how a loopback test stays on 127.0.0.1."""
    listen_fd = None
    listener = None
    if env.rank == 0:
        try:
            family = socket.getaddrinfo(env.master_addr, env.master_port, 0, socket.SOCK_STREAM)
            listener = socket.create_server(
                (env.master_addr, env.master_port), family=family[0][0], backlog=1024
            )
        except OSError as exc:
            where = f"{env.master_addr}:{env.master_port}"
            raise LaunchError(f"rank 0 cannot listen on {where}: {exc}") from exc
        listen_fd = listener.fileno()
    store = dist.TCPStore(  # type: ignore[attr-defined]
        env.master_addr,
        env.master_port,
        env.world_size,
        env.rank == 0,
        timeout=timeout,
        master_listen_fd=listen_fd,
    )
    if listener is not None:
        listener.detach()  # the store's daemon owns the descriptor now
    return store


def init_parallel(env: LaunchEnv, ep_size: int, timeout_s: float, device: str = "auto") -> Parallel:
    """Join the job: NCCL on CUDA, gloo on CPU (chosen by device availability), then EP groups."""
    ep_groups(env.world_size, ep_size)  # validates the layout before any network traffic
    use_cuda = torch.cuda.is_available() if device == "auto" else device == "cuda"
    if use_cuda:
        torch.cuda.set_device(env.local_rank)
        dev, backend, options = torch.device("cuda", env.local_rank), "nccl", None
    else:
        dev, backend, options = torch.device("cpu"), "gloo", None
        if _is_loopback(env.master_addr) and "GLOO_SOCKET_IFNAME" not in os.environ:
            options = dist.ProcessGroupGloo._Options()  # type: ignore[attr-defined]
            options._devices = [dist.ProcessGroupGloo.create_device(hostname=env.master_addr)]
    timeout = datetime.timedelta(seconds=timeout_s)
    dist.init_process_group(
        backend,
        store=_store(env, timeout),
        rank=env.rank,
        world_size=env.world_size,
        timeout=timeout,
        pg_options=options,
        device_id=dev if use_cuda else None,
    )
    ep_group = expert_dp_group = None
    if ep_size > 1:
        for ranks in ep_groups(env.world_size, ep_size):
            group = dist.new_group(ranks, pg_options=options)
            if env.rank in ranks:
                ep_group = group
    replicas = env.world_size // ep_size
    if ep_size > 1 and replicas > 1:
        for j in range(ep_size):
            ranks = list(range(j, env.world_size, ep_size))
            group = dist.new_group(ranks, pg_options=options)
            if env.rank in ranks:
                expert_dp_group = group
    return Parallel(env, dev, backend, ep_size, ep_group, expert_dp_group)


class _AllToAll(torch.autograd.Function):
    """all_to_all_single whose backward is the reverse all-to-all."""

    @staticmethod
    def forward(
        ctx: Any, x: Tensor, out_splits: list[int], in_splits: list[int], group: Any
    ) -> Tensor:
        ctx.splits, ctx.group = (out_splits, in_splits), group
        out = x.new_empty((sum(out_splits), *x.shape[1:]))
        dist.all_to_all_single(out, x.contiguous(), out_splits, in_splits, group=group)
        return out

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None, None, None]:
        out_splits, in_splits = ctx.splits
        grad_in = grad.new_empty((sum(in_splits), *grad.shape[1:]))
        dist.all_to_all_single(grad_in, grad.contiguous(), in_splits, out_splits, group=ctx.group)
        return grad_in, None, None, None


def _all_to_all(x: Tensor, out_splits: list[int], in_splits: list[int], group: Any) -> Tensor:
    """Differentiable all_to_all_single: row blocks `in_splits` out, `out_splits` in."""
    return cast(Tensor, _AllToAll.apply(x, out_splits, in_splits, group))  # type: ignore[no-untyped-call]


class AllToAllDispatch:
    """Ship expert-sorted tokens to the EP rank owning each expert, run them, ship them back."""

    def __init__(self, group: Any, ep_size: int, local_experts: range) -> None:
        self.group, self.ep_size, self.local = group, ep_size, local_experts

    def __call__(self, sorted_tokens: Tensor, counts: Tensor, run_expert: ExpertFn) -> Tensor:
        n_local = len(self.local)
        send_counts = counts.view(self.ep_size, n_local)  # row d: tokens for rank d's experts
        recv_counts = torch.empty_like(send_counts)  # row s: tokens from rank s, per local expert
        dist.all_to_all_single(recv_counts, send_counts, group=self.group)
        send_splits = send_counts.sum(dim=1).tolist()
        recv_splits = recv_counts.sum(dim=1).tolist()
        arrived = _all_to_all(sorted_tokens, recv_splits, send_splits, self.group)
        chunks = torch.split(arrived, [int(c) for c in recv_counts.flatten().tolist()])
        done = [run_expert(self.local[i % n_local], chunk) for i, chunk in enumerate(chunks)]
        return _all_to_all(torch.cat(done), send_splits, recv_splits, self.group)


def _all_reduce_mean(tensors: list[Tensor], group: Any, divisor: int, extra: Tensor) -> Tensor:
    """Sum `tensors` (and `extra`) over `group` in one flat buffer, divide the tensors by
    `divisor` in place; returns the summed `extra`."""
    flat = torch.cat([t.reshape(-1) for t in tensors] + [extra.reshape(-1)])
    dist.all_reduce(flat, group=group)
    offset = 0
    for t in tensors:
        t.copy_(flat[offset : offset + t.numel()].view_as(t)).div_(divisor)
        offset += t.numel()
    return flat[offset:]


def sync_gradients(
    named_params: list[tuple[str, torch.nn.Parameter]], par: Parallel, extra: Tensor
) -> Tensor:
    """Average gradients over the ranks that replicate each parameter, so every replica steps
    alike: routed-expert shards over their expert-DP group, everything else over the world.
    `extra` rides along the world all-reduce and comes back summed."""
    world: list[Tensor] = []
    shard: list[Tensor] = []
    for name, p in named_params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
        (shard if ".experts." in name and par.ep_size > 1 else world).append(p.grad)
    summed = _all_reduce_mean(world, None, par.env.world_size, extra)
    if shard:
        if par.expert_dp_group is None:  # only this rank holds the shard: nothing to add
            for g in shard:
                g.div_(par.env.world_size)
        else:
            _all_reduce_mean(shard, par.expert_dp_group, par.env.world_size, extra[:0])
    return summed


def clip_grad_norm(
    named_params: list[tuple[str, torch.nn.Parameter]], par: Parallel, max_norm: float
) -> float:
    """Clip by the global gradient norm, counting each expert shard once per EP group."""
    world_sq = torch.zeros((), device=par.device)
    shard_sq = torch.zeros((), device=par.device)
    for name, p in named_params:
        assert p.grad is not None
        sq = p.grad.float().pow(2).sum()
        if ".experts." in name and par.ep_size > 1:
            shard_sq += sq
        else:
            world_sq += sq
    if par.ep_group is not None:
        dist.all_reduce(shard_sq, group=par.ep_group)
    total = float((world_sq + shard_sq).sqrt())
    scale = max_norm / (total + 1e-6)
    if scale < 1.0:
        for _, p in named_params:
            assert p.grad is not None
            p.grad.mul_(scale)
    return total
