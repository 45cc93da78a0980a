"""A local stand-in for the CS336 scaling assignment's training API, to practise budgeted scaling studies.

A query names a configuration ``(d_model, num_layers, num_heads, batch_size, learning_rate, train_flops)`` and
gets back a final loss drawn from a known ground truth:

    L = E + A/N^α + B/D^β  +  c_lr·ln(lr/lr_opt(N))²  +  c_bs·ln(bs/bs_opt)²,   then × exp(σ·ε)

with ``N = 12·num_layers·d_model²`` (non-embedding parameters), ``D = train_flops/(6N)``,
``lr_opt(N) = lr₀·(N/10⁶)^(−γ)``, and ε a standard normal drawn from a generator seeded by the configuration
(so repeating a configuration gives the same loss). The API's rules are enforced:

* parameters within the course's ranges (``d_model`` 64–1024, ``num_layers`` 2–24, ``num_heads`` 2–16,
  ``batch_size`` 128 or 256, ``learning_rate`` 1e-4–1e-3, ``train_flops`` from a fixed list);
* a hard total budget (default 2e18 FLOPs): a query that would exceed it raises :class:`BudgetExceededError`
  and spends nothing;
* repeats of an identical configuration are free and return the same loss.

The state (queries so far) can be saved to JSON and loaded again, so the CLI can be used across calls.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lmfs.atomic import write_json_atomic
from lmfs.scaling.accounting import rule_of_thumb_params
from lmfs.scaling.parametric import ChinchillaParams

TRAIN_FLOPS_CHOICES = (
    1e13,
    3e13,
    6e13,
    1e14,
    3e14,
    6e14,
    1e15,
    3e15,
    6e15,
    1e16,
    3e16,
    6e16,
    1e17,
    3e17,
    6e17,
    1e18,
)
DEFAULT_BUDGET = 2e18


class BudgetExceededError(ValueError):
    """A query would take the total FLOPs spent over the simulator's budget (nothing was spent)."""


@dataclass(frozen=True)
class GroundTruth:
    """The law the simulator draws from (defaults: Epoch's refit of Chinchilla as the loss surface)."""

    E: float = 1.8172
    A: float = 482.01
    B: float = 2085.43
    alpha: float = 0.3478
    beta: float = 0.3658
    lr0: float = 6e-4  #: optimal learning rate at N = 1e6
    lr_gamma: float = 0.15  #: lr_opt ∝ N^(−γ)
    c_lr: float = 0.04
    bs_opt: float = 256.0
    c_bs: float = 0.02
    noise: float = 0.005  #: σ of the multiplicative log-normal noise

    @property
    def law(self) -> ChinchillaParams:
        return ChinchillaParams(E=self.E, A=self.A, B=self.B, alpha=self.alpha, beta=self.beta)

    def lr_opt(self, n_params: float) -> float:
        return self.lr0 * (n_params / 1e6) ** (-self.lr_gamma)

    def mean_loss(self, n_params: float, n_tokens: float, learning_rate: float, batch_size: float) -> float:
        """The noise-free loss."""
        base = float(self.law.loss(n_params, n_tokens))
        lr_pen = self.c_lr * np.log(learning_rate / self.lr_opt(n_params)) ** 2
        bs_pen = self.c_bs * np.log(batch_size / self.bs_opt) ** 2
        return base + lr_pen + bs_pen


def non_embedding_params(d_model: int, num_layers: int) -> float:
    """``12·num_layers·d_model²`` (:func:`~lmfs.scaling.accounting.rule_of_thumb_params`): the parameter count
    the simulator's law uses."""
    return float(rule_of_thumb_params(d_model, num_layers))


@dataclass(frozen=True)
class Ranges:
    """The API's allowed values."""

    d_model: tuple[int, int] = (64, 1024)
    num_layers: tuple[int, int] = (2, 24)
    num_heads: tuple[int, int] = (2, 16)
    batch_size: tuple[int, ...] = (128, 256)
    learning_rate: tuple[float, float] = (1e-4, 1e-3)
    train_flops: tuple[float, ...] = TRAIN_FLOPS_CHOICES


@dataclass
class TrainingAPISimulator:
    """Budgeted queries against a :class:`GroundTruth`. ``spent`` counts FLOPs of distinct queries."""

    total_budget: float = DEFAULT_BUDGET
    truth: GroundTruth = field(default_factory=GroundTruth)
    seed: int = 0
    ranges: Ranges = field(default_factory=Ranges)
    history: list[dict[str, Any]] = field(default_factory=list)

    @property
    def spent(self) -> float:
        return float(sum(q["train_flops"] for q in self.history))

    @property
    def remaining(self) -> float:
        return self.total_budget - self.spent

    def _validate(self, cfg: dict[str, Any]) -> None:
        r = self.ranges
        for name in ("d_model", "num_layers", "num_heads"):
            lo, hi = getattr(r, name)
            v = cfg[name]
            if not (isinstance(v, int | np.integer) and lo <= v <= hi):
                raise ValueError(f"simulator: {name}={v!r} must be an integer in [{lo}, {hi}]")
        if cfg["d_model"] % cfg["num_heads"]:
            raise ValueError(
                f"simulator: d_model {cfg['d_model']} must be divisible by num_heads {cfg['num_heads']}"
            )
        if cfg["batch_size"] not in r.batch_size:
            raise ValueError(f"simulator: batch_size={cfg['batch_size']!r} must be one of {r.batch_size}")
        lo, hi = r.learning_rate
        if not lo <= cfg["learning_rate"] <= hi:
            raise ValueError(f"simulator: learning_rate={cfg['learning_rate']!r} must lie in [{lo}, {hi}]")
        if not any(np.isclose(cfg["train_flops"], c, rtol=1e-9) for c in r.train_flops):
            raise ValueError(
                f"simulator: train_flops={cfg['train_flops']!r} must be one of {list(r.train_flops)}"
            )

    def _noise(self, key: tuple) -> float:
        digest = hashlib.sha256(repr((self.seed, *key)).encode()).digest()
        return float(np.random.default_rng(int.from_bytes(digest[:8], "little")).standard_normal())

    def query(
        self,
        d_model: int,
        num_layers: int,
        num_heads: int,
        batch_size: int,
        learning_rate: float,
        train_flops: float,
    ) -> float:
        """The final loss of one training run. Repeats are free; over-budget queries raise
        :class:`BudgetExceededError`; out-of-range parameters raise ValueError."""
        cfg = {
            "d_model": d_model,
            "num_layers": num_layers,
            "num_heads": num_heads,
            "batch_size": batch_size,
            "learning_rate": float(learning_rate),
            "train_flops": float(train_flops),
        }
        self._validate(cfg)
        key = tuple(cfg.values())
        for q in self.history:
            if tuple(q[k] for k in cfg) == key:
                return float(q["loss"])
        if self.spent + cfg["train_flops"] > self.total_budget * (1 + 1e-12):
            raise BudgetExceededError(
                f"simulator: a {cfg['train_flops']:.3g}-FLOP run would exceed the budget "
                f"({self.spent:.3g} of {self.total_budget:.3g} spent, {self.remaining:.3g} left); "
                "re-query a configuration you already ran (free) or pick a smaller train_flops"
            )
        n = non_embedding_params(d_model, num_layers)
        mean = self.truth.mean_loss(n, cfg["train_flops"] / (6 * n), cfg["learning_rate"], batch_size)
        loss = mean * float(np.exp(self.truth.noise * self._noise(key)))
        self.history.append({**cfg, "n_params": n, "loss": loss})
        return loss

    # ------------------------------------------------------------------------------------------ persistence

    def to_dict(self) -> dict[str, Any]:
        return {
            "total_budget": self.total_budget,
            "seed": self.seed,
            "truth": asdict(self.truth),
            "history": self.history,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainingAPISimulator:
        return cls(
            total_budget=float(d["total_budget"]),
            truth=GroundTruth(**d["truth"]),
            seed=int(d["seed"]),
            history=list(d["history"]),
        )

    def save(self, path: str | Path) -> None:
        """Write the state atomically (temp file + os.replace)."""
        write_json_atomic(path, self.to_dict(), default=float)

    @classmethod
    def load(cls, path: str | Path) -> TrainingAPISimulator:
        with open(path, encoding="utf-8") as fh:
            return cls.from_dict(json.load(fh))
