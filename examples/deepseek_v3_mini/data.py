"""Deterministic synthetic data: the batch of (step, dp_rank) is a pure function of the seed.

So the data position *is* the step: a run resumed from the checkpoint of step c reads exactly
the batches c+1, c+2, ... an uninterrupted run would have read, with no loader state to save.
Sequences come from a fixed random Markov chain (each token has `branching` likely successors),
so there is something to learn and the loss falls from ln(vocab) towards ln(branching).
"""

from __future__ import annotations

import hashlib

import torch
from torch import Tensor


def derive_seed(seed: int, *parts: int | str) -> int:
    """A 63-bit seed mixed from `seed` and `parts` (stable across processes and versions)."""
    text = ":".join(str(p) for p in (seed, *parts)).encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "big") >> 1


class SyntheticMarkovData:
    """Batches of token ids [batch, seq_len + 1] for any (step, dp_rank)."""

    def __init__(
        self, seed: int, vocab_size: int, batch_size: int, seq_len: int, branching: int = 4
    ) -> None:
        if min(vocab_size, batch_size, seq_len, branching) < 1 or branching > vocab_size:
            raise ValueError("vocab_size, batch_size, seq_len >= 1 and 1 <= branching <= vocab")
        self.seed, self.vocab_size = seed, vocab_size
        self.batch_size, self.seq_len, self.branching = batch_size, seq_len, branching
        chain = torch.Generator().manual_seed(derive_seed(seed, "chain"))
        self.successors = torch.randint(0, vocab_size, (vocab_size, branching), generator=chain)

    @property
    def tokens_per_batch(self) -> int:
        """Tokens a rank trains on per step (the predicted positions)."""
        return self.batch_size * self.seq_len

    def batch(self, step: int, dp_rank: int) -> Tensor:
        """The batch for optimizer step `step` (1-based) on data-parallel rank `dp_rank`."""
        if step < 1 or dp_rank < 0:
            raise ValueError(f"step must be >= 1 and dp_rank >= 0 (got {step}, {dp_rank})")
        gen = torch.Generator().manual_seed(derive_seed(self.seed, "batch", step, dp_rank))
        length = self.seq_len + 1
        out = torch.empty(self.batch_size, length, dtype=torch.long)
        out[:, 0] = torch.randint(0, self.vocab_size, (self.batch_size,), generator=gen)
        choice = torch.randint(0, self.branching, (self.batch_size, length), generator=gen)
        for pos in range(1, length):
            out[:, pos] = self.successors[out[:, pos - 1], choice[:, pos]]
        return out
