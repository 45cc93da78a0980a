"""lmfs's own tests use its pytest plugin (markers, the ``adapter`` fixture, hypothesis profiles). It is loaded
here, not installed as a global pytest plugin: installing lmfs must not change other projects' pytest runs."""

import sys

# Only when nothing loaded it yet (``-p``, another of lmfs's conftests, an older install's entry point): pluggy
# refuses one module under two names, and pytest refuses ``pytest_plugins`` in a conftest it reaches late.
if "lmfs.harness.pytest_plugin" not in sys.modules:
    pytest_plugins = ["lmfs.harness.pytest_plugin"]
