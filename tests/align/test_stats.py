"""The paired test used to compare a model before and after RL on the same held-out problems."""

import math

import pytest

from lmfs.align.export import paired_test
from lmfs.align.stats import mcnemar_exact


def _binomial_two_sided(k: int, n: int) -> float:
    # independent reference: sum the pmf of outcomes as extreme as k (fair coin, symmetric)
    pmf = [math.comb(n, i) * 0.5**n for i in range(n + 1)]
    lo = min(k, n - k)
    return min(1.0, sum(pmf[: lo + 1]) + sum(pmf[n - lo :])) if lo * 2 != n else 1.0


@pytest.mark.parametrize("b,c", [(3, 10), (10, 3), (0, 7), (25, 40), (12, 12), (1, 0)])
def test_mcnemar_matches_binomial_tail(b, c):
    assert mcnemar_exact(b, c) == pytest.approx(_binomial_two_sided(min(b, c), b + c), rel=1e-9)


def test_mcnemar_known_value_and_edges():
    # 0 of 6 discordant pairs going one way: 2 * (1/2)^6
    assert mcnemar_exact(0, 6) == pytest.approx(2 / 64)
    assert mcnemar_exact(0, 0) == 1.0
    assert mcnemar_exact(5, 5) == 1.0
    assert mcnemar_exact(200, 400) < 1e-10  # large counts: exact integers, no underflow to a wrong value
    assert mcnemar_exact(200, 400) > 0
    with pytest.raises(ValueError):
        mcnemar_exact(-1, 3)


def test_paired_test_counts_discordant_problems():
    first = [True, True, False, False, True, False]
    second = [True, False, True, True, True, False]
    p = paired_test(first, second)
    assert (p["only_first"], p["only_second"], p["first_correct"], p["second_correct"]) == (1, 2, 3, 4)
    assert p["p_value"] == pytest.approx(mcnemar_exact(1, 2))
    with pytest.raises(ValueError):
        paired_test([True], [True, False])
