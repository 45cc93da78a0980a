"""Hostile adapters graded on the optim unit (21 points, 12 tests): none implements anything real, so each must
earn 0 of the full 21 — whatever it patches, forges, skips or exits — and must not read a canary outside its
folder, read the grader's environment, reach a loopback listener, leave a process running or a file in /tmp,
or change the specs or the plugin on disk. The default suite grades a few attacks in one run each; the whole
set is the ``slow`` matrix (and ``python -m tests.harness.hostile_cases`` builds the before/after table)."""

from __future__ import annotations

from pathlib import Path

import pytest

from lmfs.harness.sandbox import probe
from tests.harness.hostile_cases import ATTACKS, ROOT, grade_attack

OPTIM_POINTS, OPTIM_TESTS = 21.0, 12
SANDBOXED = probe().sandboxed
needs_bwrap = pytest.mark.skipif(not SANDBOXED, reason=f"no working bwrap here: {probe().reason}")



def _assert_earned_nothing(res, honest: float = 0.0) -> None:
    """``honest``: what the same functions earn without the attack (a do-nothing optimizer does pass the
    'lr = 0 freezes the parameters' spec)."""
    assert res.error is None, res.error
    assert res.earned == honest, f"{res.attack} earned {res.earned}: {res.outcomes}"
    assert res.possible == OPTIM_POINTS, f"{res.attack} changed the total to {res.possible}"
    assert res.tests == OPTIM_TESTS
    assert res.outcomes.get("skipped", 0) == 0


def _assert_no_harm(res) -> None:
    assert not res.canary_leaked, f"{res.attack} read the canary"
    assert not res.env_leaked, f"{res.attack} read the grader's environment"
    assert res.connections == 0, f"{res.attack} connected to the loopback listener"
    assert res.leftover_processes == 0, f"{res.attack} left {res.leftover_processes} process(es) running"
    assert res.tmp_left_mb == 0.0, f"{res.attack} left {res.tmp_left_mb} MiB in /tmp"
    assert not res.specs_changed and not res.plugin_changed, f"{res.attack} changed files on disk"


@needs_bwrap
def test_hostile_adapter_earns_nothing_and_does_no_harm(tmp_path: Path) -> None:
    """The default suite's one hostile grade: several attacks in one adapter (``combined``)."""
    res = grade_attack("combined", tmp_path, tree=ROOT, timeout=60)
    _assert_earned_nothing(res)
    _assert_no_harm(res)
    assert res.sandboxed is True


@pytest.mark.slow
@needs_bwrap
@pytest.mark.parametrize("attack", sorted(set(ATTACKS) - {"reexport_lmfs", "call_reference", "do_nothing"}))
def test_hostile_matrix(attack: str, tmp_path: Path) -> None:
    res = grade_attack(attack, tmp_path / "attack", tree=ROOT, timeout=60)
    honest = 0.0
    if attack == "patch_checks":
        honest = grade_attack("do_nothing", tmp_path / "baseline", tree=ROOT, timeout=60).earned
    _assert_earned_nothing(res, honest)
    _assert_no_harm(res)
    if attack == "stdout_spam":
        assert res.peak_rss_mb < 1024, f"the grader held {res.peak_rss_mb} MB of the adapter's output"


@pytest.mark.slow
@needs_bwrap
@pytest.mark.parametrize("attack", ["reexport_lmfs", "call_reference"])
def test_borrowed_implementations_are_not_there(attack: str, tmp_path: Path) -> None:
    """lmfs's implementation and the specs' references are not in the sandbox: borrowing them earns nothing."""
    res = grade_attack(attack, tmp_path, tree=ROOT, timeout=60)
    _assert_earned_nothing(res)


def test_without_a_sandbox_verdicts_still_hold_and_the_grade_says_so(tmp_path: Path) -> None:
    """The fallback (``--sandbox none``, or no working bwrap): files and network are not confined, but the
    verdicts are still decided outside the submission, and the grade is marked as not sandboxed."""
    res = grade_attack("combined", tmp_path, tree=ROOT, timeout=60, extra_args=["--sandbox", "none"])
    _assert_earned_nothing(res)
    assert res.sandboxed is False
    assert not res.env_leaked  # the worker's environment is emptied in the fallback too
    assert res.leftover_processes == 0  # its descendants and tagged processes are reaped
