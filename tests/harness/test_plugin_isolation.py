"""Installing lmfs leaves other projects' pytest runs alone: its plugin loads only where asked for.

Throw-away projects in tmp_path (their own ini, markers, hypothesis use, a CS336-style ``tests/adapters.py``) run
in a child ``python -m pytest`` of this interpreter, where lmfs is installed, from their own folder (lmfs's
conftests are not in play). Each must give exactly the outcomes it gives with lmfs made unimportable. The same
projects with the plugin forced on through a ``pytest11`` entry point (what installing lmfs used to do) must
come out differently: the check can see the plugin when it is there.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

PLUGIN = "lmfs.harness.pytest_plugin"

# A project of its own: a `gpu` marker that means something else, hypothesis at its defaults, and a check that
# lmfs's plugin is not in the process.
OWN_PROJECT = {
    "pytest.ini": """
        [pytest]
        markers =
            gpu: this project's own meaning (runs everywhere)
        addopts = --strict-markers
    """,
    "test_own.py": """
        import sys

        import pytest
        from hypothesis import given, settings, strategies as st

        @pytest.mark.gpu
        def test_gpu_marked_runs():
            assert True

        def test_hypothesis_at_its_defaults():
            assert settings.get_current_profile_name() == "default"
            assert settings().max_examples == 100

        CALLS = []

        @given(st.integers())
        def test_hypothesis_runs_its_default_number_of_examples(x):
            CALLS.append(x)

        def test_after_given():
            assert len(CALLS) == 100

        def test_lmfs_plugin_not_loaded(pytestconfig):
            assert "lmfs.harness.pytest_plugin" not in sys.modules
            assert pytestconfig.pluginmanager.get_plugin("lmfs") is None
    """,
}

# A project defining an option and a fixture lmfs's plugin defines too (--adapter, adapter).
OPTION_PROJECT = {
    "pytest.ini": """
        [pytest]
        addopts = --strict-markers
    """,
    "conftest.py": """
        import pytest

        def pytest_addoption(parser):
            parser.addoption("--adapter", default="mine")

        @pytest.fixture
        def adapter(request):
            return request.config.getoption("--adapter")
    """,
    "test_option.py": """
        def test_own_adapter_option(adapter):
            assert adapter == "mine"
    """,
}

# CS336's layout: tests/adapters.py glues the tests to the student's package; a test that is not written yet.
STUDENT_PROJECT = {
    "pyproject.toml": """
        [tool.pytest.ini_options]
        testpaths = ["tests"]
    """,
    "cs336_basics/__init__.py": "",
    "cs336_basics/nn.py": """
        import torch

        def linear(w, x):
            return x @ w.T

        def softmax(x, dim):
            raise NotImplementedError
    """,
    "tests/__init__.py": "",
    "tests/adapters.py": """
        from cs336_basics import nn

        def run_linear(d_in, d_out, weights, in_features):
            return nn.linear(weights, in_features)

        def run_softmax(in_features, dim):
            return nn.softmax(in_features, dim)
    """,
    "tests/conftest.py": """
        import pytest
        import torch

        @pytest.fixture
        def in_features():
            return torch.randn(2, 3, generator=torch.Generator().manual_seed(0))
    """,
    "tests/test_model.py": """
        import pytest
        import torch

        from .adapters import run_linear, run_softmax

        def test_linear(in_features):
            w = torch.eye(3)
            torch.testing.assert_close(run_linear(3, 3, w, in_features), in_features)

        def test_softmax(in_features):
            torch.testing.assert_close(run_softmax(in_features, -1), torch.softmax(in_features, -1))

        @pytest.mark.skip(reason="the student skipped it")
        def test_skipped():
            pass
    """,
}

PROJECTS = {"own": OWN_PROJECT, "option": OPTION_PROJECT, "student": STUDENT_PROJECT}

# What each project gives on its own, with no lmfs anywhere near it.
EXPECTED = {
    "own": {
        "test_gpu_marked_runs": "passed",
        "test_hypothesis_at_its_defaults": "passed",
        "test_hypothesis_runs_its_default_number_of_examples": "passed",
        "test_after_given": "passed",
        "test_lmfs_plugin_not_loaded": "passed",
    },
    "option": {"test_own_adapter_option": "passed"},
    "student": {"test_linear": "passed", "test_softmax": "failed", "test_skipped": "skipped"},
}


def _write_project(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip())
    return root


def _clean_env(extra_path: list[Path] | None = None) -> dict[str, str]:
    """This environment, less what would steer the child pytest or hypothesis from outside."""
    env = {
        k: v for k, v in os.environ.items()
        if not k.startswith(("PYTEST_", "HYPOTHESIS_")) and k not in ("CI", "PYTHONPATH")
    }
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    if extra_path:
        env["PYTHONPATH"] = os.pathsep.join(map(str, extra_path))
    return env


def _hidden_lmfs(tmp: Path) -> Path:
    """A folder that, first on the path, makes ``import lmfs`` fail."""
    site = tmp / "hide-lmfs"
    (site / "lmfs").mkdir(parents=True)
    (site / "lmfs" / "__init__.py").write_text("raise ImportError('lmfs is hidden for this run')\n")
    return site


def _forced_plugin(tmp: Path) -> Path:
    """A folder holding a distribution that registers lmfs's plugin under ``pytest11``, as an install of lmfs
    with the old entry point did."""
    site = tmp / "force-lmfs"
    info = site / "lmfs_forced_plugin-0.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: lmfs-forced-plugin\nVersion: 0.0\n")
    (info / "entry_points.txt").write_text(f"[pytest11]\nlmfs = {PLUGIN}\n")
    return site


def _run(project: Path, env: dict[str, str]) -> tuple[dict[str, str], subprocess.CompletedProcess]:
    """Run the project's tests; their outcomes by test name (from a junit XML report) and the process."""
    junit = project.parent / f"{project.name}-{len(list(project.parent.glob('*.xml')))}.xml"
    res = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={junit}"],
        cwd=project, env=env, capture_output=True, text=True, timeout=300,
    )
    outcomes: dict[str, str] = {}
    if junit.exists():
        for case in ET.parse(junit).getroot().iter("testcase"):
            kinds = {child.tag for child in case}
            outcome = next((k for k in ("error", "failure", "skipped") if k in kinds), "passed")
            outcomes[case.get("name", "")] = {"failure": "failed"}.get(outcome, outcome)
    return outcomes, res


def _importable(env: dict[str, str], cwd: Path) -> bool:
    res = subprocess.run([sys.executable, "-c", f"import {PLUGIN}"], cwd=cwd, env=env, capture_output=True,
                         timeout=120)
    return res.returncode == 0


@pytest.mark.parametrize("name", sorted(PROJECTS))
def test_other_projects_run_as_without_lmfs(tmp_path: Path, name: str) -> None:
    project = _write_project(tmp_path / name, PROJECTS[name])
    installed, hidden = _clean_env(), _clean_env([_hidden_lmfs(tmp_path)])
    assert _importable(installed, project), "lmfs must be importable in the child for this check to mean anything"
    assert not _importable(hidden, project)

    with_lmfs, res = _run(project, installed)
    without_lmfs, res_hidden = _run(project, hidden)
    assert with_lmfs == EXPECTED[name], res.stdout + res.stderr
    assert without_lmfs == EXPECTED[name], res_hidden.stdout + res_hidden.stderr
    assert res.returncode == res_hidden.returncode == (1 if "failed" in EXPECTED[name].values() else 0)


@pytest.mark.parametrize("name", ["own", "option"])
def test_the_check_sees_the_plugin_when_forced_on(tmp_path: Path, name: str) -> None:
    """The same projects with lmfs's plugin registered through ``pytest11``: they come out differently, so the
    test above fails if installing lmfs loads the plugin again. (A CS336-style suite touches nothing the plugin
    changes; the "own" project's process-wide checks stand for it.)"""
    import torch

    project = _write_project(tmp_path / name, PROJECTS[name])
    forced, res = _run(project, _clean_env([_forced_plugin(tmp_path)]))
    output = res.stdout + res.stderr
    assert forced != EXPECTED[name], output
    if name == "own":
        assert forced["test_lmfs_plugin_not_loaded"] == "failed", output
        assert forced["test_hypothesis_at_its_defaults"] == "failed", output  # lmfs's "dev" profile
        assert forced["test_after_given"] == "failed", output  # 25 examples, not 100
        if not torch.cuda.is_available():
            assert forced["test_gpu_marked_runs"] == "skipped", output  # lmfs skips `gpu` tests without CUDA
    else:
        assert res.returncode != 0 and "'--adapter'" in output and "already" in output, output  # two --adapter
