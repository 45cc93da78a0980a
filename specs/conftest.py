"""The specs need lmfs's pytest plugin (the ``adapter`` fixture, ``--adapter``, the ``points``/``unit`` markers,
``run_ranks``). It is loaded here, for runs inside this checkout, not installed as a global pytest plugin:
installing lmfs must not change other projects' pytest runs. The grader loads it with ``-p``."""

import sys

# Only when nothing loaded it yet (``-p``, tests/conftest.py in ``pytest tests specs``, an older install's entry
# point): pluggy refuses one module under two names, and pytest refuses ``pytest_plugins`` in a conftest it
# reaches only while collecting (``pytest .`` reaches this one late).
if "lmfs.harness.pytest_plugin" not in sys.modules:
    pytest_plugins = ["lmfs.harness.pytest_plugin"]
