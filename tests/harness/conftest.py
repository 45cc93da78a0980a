"""tests/harness: the fixture specs and adapters under fixtures/ are material for the grader's tests (some of
them hang, crash or exhaust memory on purpose), so they are only collected inside a grading child
(``--grade-log`` set), never by a plain ``pytest tests``."""

from __future__ import annotations

from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    if collection_path == FIXTURES and not config.getoption("--grade-log"):
        return True
    return None
