"""One training workload of the Transformer LM — random batch, model, optimizer — and its three timed steps:
``forward`` (no grad), ``forward-backward`` and ``step`` (forward, backward, AdamW update), optionally under bf16
autocast and ``torch.compile``. Shared by ``lmfs bench model`` and ``lmfs profile``.

Each phase runs inside ``torch.profiler.record_function`` (and an NVTX range on CUDA) named ``forward``,
``backward``, ``optimizer``; the attention call of every layer is wrapped in a ``attention`` range so the profile
summary can attribute time to it.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import Tensor

from lmfs.kernels.attention_backends import make_attention
from lmfs.profile.sizes import BATCH_SIZE, ModelSize, make_config

MODES = ("forward", "forward-backward", "step")
DTYPES = ("fp32", "bf16")


@contextlib.contextmanager
def annotate(name: str, device: torch.device) -> Iterator[None]:
    """``record_function(name)`` for torch.profiler, plus an NVTX range on CUDA (for Nsight Systems)."""
    with torch.profiler.record_function(name):
        if device.type == "cuda":
            torch.cuda.nvtx.range_push(name)
            try:
                yield
            finally:
                torch.cuda.nvtx.range_pop()
        else:
            yield


def _annotated_attention(fn: Callable, device: torch.device) -> Callable:
    @functools.wraps(fn)  # keeps what the kernel declares (e.g. ``supports_gqa``)
    def attention_fn(
        q: Tensor, k: Tensor, v: Tensor, *, is_causal: bool, mask: Tensor | None = None, scale: float | None = None
    ) -> Tensor:
        with annotate("attention", device):
            return fn(q, k, v, is_causal=is_causal, mask=mask, scale=scale)

    return attention_fn


@dataclass
class Workload:
    """A model, an optimizer and one random batch ``(batch, context)`` on ``device``."""

    model: torch.nn.Module
    step_model: Callable[[Tensor], Tensor]  # the model itself, or its torch.compile'd version
    optimizer: torch.optim.Optimizer
    inputs: Tensor
    targets: Tensor
    device: torch.device
    dtype: str

    def _autocast(self):
        if self.dtype == "bf16":
            return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _loss(self) -> Tensor:
        from lmfs.nn import cross_entropy

        with annotate("forward", self.device), self._autocast():
            logits = self.step_model(self.inputs)
            return cross_entropy(logits.float(), self.targets)

    def forward(self) -> None:
        with torch.no_grad():
            self._loss()

    def forward_backward(self) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        loss = self._loss()
        with annotate("backward", self.device):
            loss.backward()

    def step(self) -> None:
        self.forward_backward()
        with annotate("optimizer", self.device):
            self.optimizer.step()

    def runner(self, mode: str) -> Callable[[], None]:
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
        return {"forward": self.forward, "forward-backward": self.forward_backward, "step": self.step}[mode]


def build_workload(
    size: ModelSize,
    context_length: int,
    device: str = "cpu",
    dtype: str = "fp32",
    compile: bool = False,
    attention: str = "default",
    batch_size: int = BATCH_SIZE,
    seed: int = 0,
    activation_checkpointing: int = 0,
) -> Workload:
    """The model (float32 weights; ``dtype="bf16"`` runs under autocast), AdamW, and a random batch.

    ``attention``: a backend name of :mod:`lmfs.kernels.attention_backends` (``attention_names()``).
    ``activation_checkpointing``: the model's switch (0 none, 1 every block, k every k-th block).
    """
    from lmfs.nn import TransformerLM
    from lmfs.optim import AdamW

    if dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; choose one of {', '.join(DTYPES)}")
    attention_fn = make_attention(attention)  # a clear error for an unknown name
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' requested but CUDA is not available; use --device cpu")
    torch.manual_seed(seed)
    config = make_config({**size, "activation_checkpointing": activation_checkpointing}, context_length)
    model = TransformerLM(config, device=dev)
    model.set_attention_fn(_annotated_attention(attention_fn, dev))
    optimizer = AdamW(model.parameters(), lr=1e-4)
    gen = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, config.vocab_size, (batch_size, context_length + 1), generator=gen).to(dev)
    step_model = torch.compile(model) if compile else model
    return Workload(model, step_model, optimizer, tokens[:, :-1], tokens[:, 1:], dev, dtype)
