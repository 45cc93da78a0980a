"""A synthetic verifiable task that a small model learns on a CPU: multi-digit addition.

A problem is ``"a+b="`` with ``a`` and ``b`` drawn uniformly from ``[0, 10**digits)``; the answer is the decimal
sum. The verifier is exact: a response is correct when, stripped of whitespace, it is exactly the sum's digits.
Held-out problems are a fixed sample (seeded) that the training generator never yields: the generator
rejects every pair in the held-out set, so accuracy on it measures generalization, not recall.

The model reads characters: :class:`CharTokenizer` maps each character of a small alphabet to one id, plus an
end-of-sequence id (which doubles as padding).
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

DIGITS_ALPHABET = "0123456789+= "


class CharTokenizer:
    """One id per character of ``alphabet``; ``<eos>`` is the last id. Unknown characters raise ValueError, or
    become ``unknown`` (a character of the alphabet) when it is given."""

    def __init__(self, alphabet: str = DIGITS_ALPHABET, unknown: str | None = None) -> None:
        if len(set(alphabet)) != len(alphabet):
            raise ValueError("CharTokenizer: the alphabet repeats a character")
        if unknown is not None and unknown not in alphabet:
            raise ValueError(f"CharTokenizer: unknown={unknown!r} is not in the alphabet")
        self.alphabet = alphabet
        self.unknown = unknown
        self.to_id = {c: i for i, c in enumerate(alphabet)}
        self.eos_token_id = len(alphabet)
        self.pad_token_id = self.eos_token_id
        self.vocab_size = len(alphabet) + 1

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        if self.unknown is not None:
            fallback = self.to_id[self.unknown]
            return [self.to_id.get(c, fallback) for c in text]
        try:
            return [self.to_id[c] for c in text]
        except KeyError as exc:
            raise ValueError(f"CharTokenizer: character {exc.args[0]!r} is not in the alphabet "
                             f"{self.alphabet!r}") from None

    def decode(self, ids: Sequence[int]) -> str:
        return "".join(self.alphabet[i] for i in ids if 0 <= i < len(self.alphabet))

    def spec(self) -> dict:
        return {"kind": "char", "alphabet": self.alphabet, "unknown": self.unknown}


@dataclass(frozen=True)
class Problem:
    prompt: str
    answer: str


class AdditionTask:
    """Problems ``a+b=`` → ``str(a + b)``; ``heldout`` is disjoint from everything :meth:`sample` yields."""

    name = "addition"

    def __init__(self, digits: int = 2, heldout_size: int = 500, seed: int = 1234) -> None:
        if digits < 1:
            raise ValueError(f"digits must be >= 1, got {digits}")
        space = 10 ** (2 * digits)
        if heldout_size >= space // 2:
            raise ValueError(f"heldout_size {heldout_size} is too large for {digits}-digit problems ({space})")
        self.digits = digits
        rng = random.Random(seed)
        pairs: set[tuple[int, int]] = set()
        while len(pairs) < heldout_size:
            pairs.add(self._pair(rng))
        self._heldout_pairs = pairs
        self.heldout = [self.problem(a, b) for a, b in sorted(pairs)]

    def _pair(self, rng: random.Random) -> tuple[int, int]:
        hi = 10**self.digits
        return rng.randrange(hi), rng.randrange(hi)

    @staticmethod
    def problem(a: int, b: int) -> Problem:
        return Problem(f"{a}+{b}=", str(a + b))

    def sample(self, rng: random.Random) -> Problem:
        while True:
            pair = self._pair(rng)
            if pair not in self._heldout_pairs:
                return self.problem(*pair)

    def stream(self, seed: int) -> Iterator[Problem]:
        rng = random.Random(seed)
        while True:
            yield self.sample(rng)

    @property
    def max_prompt_chars(self) -> int:
        return 2 * self.digits + 2

    @property
    def max_answer_chars(self) -> int:
        return self.digits + 1


def addition_verifier(response: str, truth: str) -> bool:
    """Exact: the response, stripped of whitespace, is the answer's digits."""
    return response.strip() == truth.strip()


TASKS = {"addition": AdditionTask}


def make_task(name: str, **kwargs) -> AdditionTask:
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; known: {', '.join(TASKS)}")
    return TASKS[name](**kwargs)
