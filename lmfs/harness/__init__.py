"""The harness: adapter loading, grading, the benchmark store, regression detection and HTML reports.

* :mod:`~lmfs.harness.adapter` — load an adapter (file or module); the ``Adapter`` view specs call into.
* :mod:`~lmfs.harness.pytest_plugin` — ``--adapter``, the ``adapter`` fixture, markers, the grading log.
* :mod:`~lmfs.harness.grade` — sandboxed grading (timeouts, memory cap, crash recovery) -> reports/grade/.
* :mod:`~lmfs.harness.machine` — machine_id and the facts stored with every benchmark run.
* :mod:`~lmfs.harness.store` — reports/bench/<machine_id>/<commit>.json: atomic writes, merging, reading.
* :mod:`~lmfs.harness.history` / :mod:`~lmfs.harness.regress` — history tables, commit comparison,
  change points.
* :mod:`~lmfs.harness.render` / :mod:`~lmfs.harness.sections` — the HTML report (building blocks in
  :mod:`lmfs.reporting`, shared with the units' sections).
"""
