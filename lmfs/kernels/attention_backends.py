"""The attention backends: the one table of names that ``lmfs bench model`` / ``lmfs profile``, the kernel and
model benchmarks and the GPU scripts offer (the CLI's ``--attention`` choices are :func:`attention_names`).

Every backend is a callable with the model's seam signature (:class:`lmfs.nn.attention.AttentionFn`)::

    attention_fn(q, k, v, *, is_causal, mask=None, scale=None) -> out        # (B, H, T, D)

so ``model.set_attention_fn(make_attention("triton"))`` swaps it into a :class:`~lmfs.nn.TransformerLM`. The
table lives here, above lmfs.nn (which imports nothing from lmfs.kernels): the model's default stays lmfs.nn's own
tensor-op attention, and lmfs.nn never calls ``torch.nn.functional`` — the SDPA peers are in
:mod:`lmfs.kernels.peers`. :data:`BACKENDS` is the table; :func:`describe` prints it.

What each does with the seam's arguments (each accepts grouped K/V heads: ``supports_gqa``):

* ``default``, ``naive``, ``sdpa``, ``sdpa-math``, ``sdpa-efficient``: ``mask`` and ``scale`` natively.
* ``pytorch``, ``triton``: the kernels know only ``is_causal`` with ``Tq == Tk`` (grouped K/V heads are
  repeated, ``scale`` is folded into q). A call with a ``mask``, or causal with ``Tq ≠ Tk``, runs lmfs.nn's
  from-scratch masked attention instead — correct, not tiled. The model passes a mask only for a chunk of more
  than one token fed after cached ones: a first (prefill) chunk is plain causal and a one-token decode step needs
  no mask, so both run the kernel.
* ``sdpa-flash``, ``sdpa-cudnn``: SDPA restricted to one fused kernel, used without a mask: a ``mask`` (or
  causal with ``Tq ≠ Tk``) is a ``ValueError`` naming the backend.

``label`` is the id a backend's results are stored under by the kernel benchmarks (``lmfs-triton``,
``torch-sdpa-flash``, ...): benchmark names are built from it, so it must not change.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lmfs.nn.attention import AttentionFn

ANY_DEVICE = "any device"
CUDA = "CUDA"
TRITON = "CUDA, or the CPU with TRITON_INTERPRET=1"


@dataclass(frozen=True)
class AttentionBackend:
    """One row of the table; :meth:`make` returns the seam callable."""

    name: str
    factory: Callable[[], AttentionFn]
    description: str
    runs_on: str  # ANY_DEVICE, CUDA or TRITON
    peer: bool  # a reference implementation lmfs is compared against, not lmfs's own
    label: str  # the stable benchmark id

    def make(self) -> AttentionFn:
        return self.factory()


def _default() -> AttentionFn:
    from lmfs.nn.functional import causal_attention

    return causal_attention


def _naive() -> AttentionFn:
    from lmfs.kernels.attention import naive_attention

    return naive_attention


def _pytorch() -> AttentionFn:
    from lmfs.kernels.attention import pytorch_flash_attention

    return pytorch_flash_attention


def _triton() -> AttentionFn:
    from lmfs.kernels.attention import triton_flash_attention

    return triton_flash_attention


def _sdpa(kernel: str | None) -> Callable[[], AttentionFn]:
    def factory() -> AttentionFn:
        from lmfs.kernels.peers import sdpa_attention

        return sdpa_attention(kernel)

    return factory


BACKENDS: tuple[AttentionBackend, ...] = (
    AttentionBackend("default", _default, "lmfs.nn's own from-scratch attention (tensor ops)", ANY_DEVICE,
                     peer=False, label="lmfs"),
    AttentionBackend("naive", _naive, "materialised scores + softmax, the baseline kernel", ANY_DEVICE,
                     peer=False, label="naive"),
    AttentionBackend("pytorch", _pytorch, "tiled FlashAttention-2 written in PyTorch", ANY_DEVICE,
                     peer=False, label="lmfs-pytorch"),
    AttentionBackend("triton", _triton, "FlashAttention-2 Triton kernels", TRITON,
                     peer=False, label="lmfs-triton"),
    AttentionBackend("sdpa", _sdpa(None), "torch SDPA, kernel chosen by PyTorch", ANY_DEVICE,
                     peer=True, label="torch-sdpa"),
    AttentionBackend("sdpa-math", _sdpa("math"), "torch SDPA, its math (reference) kernel", ANY_DEVICE,
                     peer=True, label="torch-sdpa-math"),
    AttentionBackend("sdpa-flash", _sdpa("flash"), "torch SDPA, its FlashAttention-2 kernel", CUDA,
                     peer=True, label="torch-sdpa-flash"),
    AttentionBackend("sdpa-cudnn", _sdpa("cudnn"), "torch SDPA, its cuDNN kernel", CUDA,
                     peer=True, label="torch-sdpa-cudnn"),
    AttentionBackend("sdpa-efficient", _sdpa("efficient"), "torch SDPA, its memory-efficient kernel", CUDA,
                     peer=True, label="torch-sdpa-efficient"),
)
_BY_NAME = {b.name: b for b in BACKENDS}
_BY_LABEL = {b.label: b for b in BACKENDS}


def attention_names() -> tuple[str, ...]:
    """Every backend name, lmfs's own first: the choices a CLI's ``--attention`` offers."""
    return tuple(_BY_NAME)


def get_backend(name: str) -> AttentionBackend:
    """The row called ``name``; a clear error for anything else."""
    if name not in _BY_NAME:
        raise ValueError(f"unknown attention backend {name!r}; choose one of {', '.join(_BY_NAME)}")
    return _BY_NAME[name]


def backend_with_label(label: str) -> AttentionBackend:
    """The row whose benchmark label is ``label`` (e.g. ``"lmfs-triton"``); a clear error for anything else."""
    if label not in _BY_LABEL:
        raise ValueError(f"unknown attention benchmark label {label!r}; choose one of {', '.join(_BY_LABEL)}")
    return _BY_LABEL[label]


def make_attention(name: str) -> AttentionFn:
    """The seam callable of the backend called ``name`` (for ``model.set_attention_fn``)."""
    return get_backend(name).make()


def describe() -> str:
    """The table as text: name, lmfs or peer, where it runs, what it is."""
    return "\n".join(
        f"{b.name:<16}{'peer' if b.peer else 'lmfs':<6}{b.runs_on:<44}{b.description}" for b in BACKENDS
    )
