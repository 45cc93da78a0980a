"""Token embedding lookup."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from lmfs.nn.init import trunc_normal_


class Embedding(nn.Module):
    """A (num_embeddings, embedding_dim) table, initialized N(0, 1) truncated at ±3.

    forward: integer ids (...) -> (..., embedding_dim).
    """

    def __init__(
        self,
        num_embeddings: int,
        embedding_dim: int,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.num_embeddings, self.embedding_dim = num_embeddings, embedding_dim
        self.weight = nn.Parameter(torch.empty(num_embeddings, embedding_dim, device=device, dtype=dtype))
        self.reset_parameters()

    def reset_parameters(self, std: float = 1.0) -> None:
        trunc_normal_(self.weight, std=std, a=-3 * std, b=3 * std)

    def forward(self, token_ids: Tensor) -> Tensor:
        return self.weight[token_ids]

    def extra_repr(self) -> str:
        return f"num_embeddings={self.num_embeddings}, embedding_dim={self.embedding_dim}"
