"""Specs for the GRPO functions: group-normalized rewards, the policy-gradient losses (naive, GRPO-Clip and the
dispatcher), the masked mean and the GRPO microbatch step (loss value and the gradient on the log-probs)."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from specs.align import reference as ref

SEED = st.integers(0, 2**31 - 1)
FAST = settings(deadline=None, max_examples=40)


def _reward_fn(calls: list[tuple[str, str]]):
    """Reward = the response read as a number, plus 1 when it equals the ground truth; records its calls."""

    def reward_fn(response: str, ground_truth: str) -> dict[str, float]:
        calls.append((response, ground_truth))
        value = float(response)
        return {"reward": value + (1.0 if response == ground_truth else 0.0), "format_reward": 1.0}

    return reward_fn


@pytest.mark.points(3)
def test_group_normalized_rewards_match_reference(adapter):
    @FAST
    @given(
        groups=st.integers(1, 4),
        group_size=st.integers(2, 6),
        data=st.data(),
        eps=st.sampled_from([1e-6, 0.1, 1.0]),
        by_std=st.booleans(),
    )
    def check(groups, group_size, data, eps, by_std):
        n = groups * group_size
        values = data.draw(st.lists(st.integers(0, 3), min_size=n, max_size=n))
        responses = [str(v) for v in values]
        truths = [str(g % 3) for g in range(groups) for _ in range(group_size)]
        calls: list[tuple[str, str]] = []
        advantages, raw, metadata = adapter.run_compute_group_normalized_rewards(
            _reward_fn(calls), responses, truths, group_size, eps, by_std
        )
        assert sorted(calls) == sorted(zip(responses, truths, strict=True))
        rewards = [v + (1.0 if r == t else 0.0) for v, r, t in zip(values, responses, truths, strict=True)]
        assert isinstance(metadata, dict)
        assert raw.reshape(-1).tolist() == pytest.approx(rewards)
        assert advantages.shape == raw.shape and advantages.numel() == n
        expected = ref.group_normalize(rewards, group_size, eps, by_std)
        assert advantages.reshape(-1).double().tolist() == pytest.approx(expected, rel=1e-5, abs=1e-6)

    check()


@pytest.mark.points(1)
def test_group_normalized_rewards_by_hand(adapter):
    rewards = ["1", "0", "0", "1", "1", "1"]  # groups of 3: [1,0,0] and [1,1,1] (a tie: all advantages 0)
    truths = ["x"] * 6
    adv, raw, _ = adapter.run_compute_group_normalized_rewards(
        lambda r, g: {"reward": float(r)}, rewards, truths, 3, 1e-6, True
    )
    # group 1: mean 1/3, unbiased std sqrt(1/3)
    s = math.sqrt(1 / 3) + 1e-6
    assert adv.reshape(-1).tolist() == pytest.approx([(2 / 3) / s, (-1 / 3) / s, (-1 / 3) / s, 0, 0, 0], rel=1e-5)
    adv, _, _ = adapter.run_compute_group_normalized_rewards(
        lambda r, g: {"reward": float(r)}, rewards, truths, 3, 1e-6, False
    )
    assert adv.reshape(-1).tolist() == pytest.approx([2 / 3, -1 / 3, -1 / 3, 0, 0, 0], rel=1e-6)
    assert raw.reshape(-1).tolist() == [1, 0, 0, 1, 1, 1]


def _pg_problem(seed: int, batch: int, length: int):
    g = torch.Generator().manual_seed(seed)
    adv = torch.randn(batch, 1, generator=g, dtype=torch.float64)
    log_probs = -torch.rand(batch, length, generator=g, dtype=torch.float64) * 3
    old = log_probs + torch.randn(batch, length, generator=g, dtype=torch.float64) * 0.3
    return adv, log_probs, old


@pytest.mark.points(1)
def test_naive_policy_gradient_loss(adapter):
    adv, log_probs, _ = _pg_problem(0, 4, 7)
    got = adapter.run_compute_naive_policy_gradient_loss(adv, log_probs)
    assert got.shape == (4, 7)
    expected = [[-a * lp for lp in row] for a, row in zip(adv[:, 0].tolist(), log_probs.tolist(), strict=True)]
    torch.testing.assert_close(got.double(), torch.tensor(expected, dtype=torch.float64))


def _clip_reference(adv, log_probs, old, eps):
    loss, grad, clipped = [], [], []
    for a, lp_row, old_row in zip(adv[:, 0].tolist(), log_probs.tolist(), old.tolist(), strict=True):
        cells = [ref.grpo_clip_token(a, lp, o, eps) for lp, o in zip(lp_row, old_row, strict=True)]
        loss.append([c[0] for c in cells])
        grad.append([c[1] for c in cells])
        clipped.append([c[2] for c in cells])
    t = torch.tensor
    return t(loss, dtype=torch.float64), t(grad, dtype=torch.float64), t(clipped)


def _reports_clipping(metadata: dict, clipped: torch.Tensor) -> bool:
    """True if some metadata tensor is the clipped mask (B, T) or the clipped fraction."""
    for value in metadata.values():
        if not isinstance(value, torch.Tensor):
            continue
        if value.shape == clipped.shape and torch.equal(value.bool(), clipped):
            return True
        if value.numel() == 1 and value.is_floating_point():
            if abs(value.item() - clipped.double().mean().item()) < 1e-6:
                return True
    return False


@pytest.mark.points(3)
def test_grpo_clip_loss_matches_reference(adapter):
    @FAST
    @given(seed=SEED, batch=st.integers(1, 5), length=st.integers(1, 8), eps=st.sampled_from([0.05, 0.2, 0.5]))
    def check(seed, batch, length, eps):
        adv, log_probs, old = _pg_problem(seed, batch, length)
        loss, metadata = adapter.run_compute_grpo_clip_loss(adv, log_probs, old, eps)
        expected, _, clipped = _clip_reference(adv, log_probs, old, eps)
        assert loss.shape == (batch, length)
        torch.testing.assert_close(loss.double(), expected)
        assert isinstance(metadata, dict)
        assert _reports_clipping(metadata, clipped), f"metadata reports no clipping mask/fraction: {metadata}"

    check()


@pytest.mark.points(1)
def test_grpo_clip_loss_ties(adapter):
    # ratio exactly 1 (old == new): loss = -A, nothing clipped; ratio exactly on the clip edge: both terms agree
    adv = torch.tensor([[2.0], [-1.5], [0.0]], dtype=torch.float64)
    log_probs = torch.tensor([[-1.0, -2.0], [-0.5, -3.0], [-1.0, -1.0]], dtype=torch.float64)
    loss, metadata = adapter.run_compute_grpo_clip_loss(adv, log_probs, log_probs.clone(), 0.2)
    torch.testing.assert_close(loss.double(), -adv.expand(3, 2))
    assert _reports_clipping(metadata, torch.zeros(3, 2, dtype=torch.bool))
    edge = log_probs + math.log(1.2)
    loss, _ = adapter.run_compute_grpo_clip_loss(adv, edge, log_probs, 0.2)
    torch.testing.assert_close(loss.double(), -1.2 * adv.expand(3, 2))


@pytest.mark.points(2)
def test_compute_policy_gradient_loss_dispatch(adapter):
    adv, log_probs, old = _pg_problem(7, 3, 5)
    raw = adv.abs()
    naive = torch.tensor(
        [[-a * lp for lp in row] for a, row in zip(raw[:, 0].tolist(), log_probs.tolist(), strict=True)],
        dtype=torch.float64,
    )
    # every type gets all arguments: each must use the right ones
    loss, meta = adapter.run_compute_policy_gradient_loss(log_probs, "no_baseline", raw, adv, old, 0.2)
    torch.testing.assert_close(loss.double(), naive)
    assert isinstance(meta, dict)
    loss, _ = adapter.run_compute_policy_gradient_loss(log_probs, "reinforce_with_baseline", raw, adv, old, 0.2)
    torch.testing.assert_close(loss.double(), -adv * log_probs)
    loss, _ = adapter.run_compute_policy_gradient_loss(log_probs, "grpo_clip", raw, adv, old, 0.2)
    torch.testing.assert_close(loss.double(), _clip_reference(adv, log_probs, old, 0.2)[0])


@pytest.mark.points(1)
def test_compute_policy_gradient_loss_missing_arguments(adapter):
    adv, log_probs, old = _pg_problem(8, 2, 3)
    bad = [
        ("no_baseline", None, adv, old, 0.2),
        ("reinforce_with_baseline", adv, None, old, 0.2),
        ("grpo_clip", adv, None, old, 0.2),
        ("grpo_clip", adv, adv, None, 0.2),
        ("grpo_clip", adv, adv, old, None),
        ("ppo", adv, adv, old, 0.2),
    ]
    for loss_type, raw, advantages, old_lp, cliprange in bad:
        with pytest.raises((ValueError, AssertionError)):
            adapter.run_compute_policy_gradient_loss(log_probs, loss_type, raw, advantages, old_lp, cliprange)


@pytest.mark.points(2)
def test_masked_mean_matches_reference(adapter):
    @FAST
    @given(
        seed=SEED,
        shape=st.lists(st.integers(1, 5), min_size=1, max_size=3).map(tuple),
        p_keep=st.sampled_from([0.3, 0.7, 1.0]),
        data=st.data(),
    )
    def check(seed, shape, p_keep, data):
        g = torch.Generator().manual_seed(seed)
        values = torch.randn(*shape, generator=g, dtype=torch.float64)
        mask = torch.rand(*shape, generator=g) < p_keep
        dim = data.draw(st.sampled_from([None, *range(len(shape)), -1]))
        got = adapter.run_masked_mean(values, mask, dim=dim).double()
        expected = ref.masked_mean(values, mask, dim)
        defined = torch.isfinite(expected)  # a slice with no kept element has no mean: not graded
        assert got.shape == expected.shape
        torch.testing.assert_close(got[defined], expected[defined])

    check()


def _rows_with_a_response(seed: int, batch: int, length: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed + 1)
    mask = torch.rand(batch, length, generator=g) < 0.6
    mask[torch.arange(batch), torch.randint(0, length, (batch,), generator=g)] = True
    return mask


@pytest.mark.points(3)
def test_grpo_microbatch_train_step_loss_and_gradient(adapter):
    @FAST
    @given(
        seed=SEED,
        batch=st.integers(1, 5),
        length=st.integers(1, 8),
        accum=st.sampled_from([1, 2, 4]),
        loss_type=st.sampled_from(["no_baseline", "reinforce_with_baseline", "grpo_clip"]),
    )
    def check(seed, batch, length, accum, loss_type):
        adv, log_probs, old = _pg_problem(seed, batch, length)
        mask = _rows_with_a_response(seed, batch, length)
        if loss_type == "grpo_clip":
            per_token, d_token, _ = _clip_reference(adv, log_probs, old, 0.2)
            kwargs = dict(advantages=adv, old_log_probs=old, cliprange=0.2)
        else:
            per_token = -adv * log_probs
            d_token = -adv.expand(batch, length)
            kwargs = dict(raw_rewards=adv) if loss_type == "no_baseline" else dict(advantages=adv)
        policy = log_probs.clone().requires_grad_()
        loss, metadata = adapter.run_grpo_microbatch_train_step(policy, mask, accum, loss_type, **kwargs)
        assert isinstance(metadata, dict)
        counts = mask.sum(dim=-1).tolist()
        row_means = [s / n for s, n in zip(ref.masked_sum_rows(per_token, mask), counts, strict=True)]
        assert loss.dim() == 0
        assert loss.item() == pytest.approx(math.fsum(row_means) / batch / accum, rel=1e-9, abs=1e-12)
        # d loss / d log_prob[b, t] = mask[b, t] * d token_loss / (n_b * batch * accum)
        expected_grad = [
            [d / (n * batch * accum) if m else 0.0 for d, m in zip(d_row, m_row, strict=True)]
            for d_row, m_row, n in zip(d_token.tolist(), mask.tolist(), counts, strict=True)
        ]
        assert policy.grad is not None
        torch.testing.assert_close(policy.grad, torch.tensor(expected_grad, dtype=torch.float64))

    check()
