"""Scaling laws: FLOPs/parameter accounting, IsoFLOP (Chinchilla Approaches 1, 2) and parametric (Approach 3)
fits, a training-API simulator, and sweeps of real lmfs runs.

Modules, one concept each:

* :mod:`~lmfs.scaling.accounting` — parameters, FLOPs, memory of lmfs's Transformer LM (pure arithmetic).
* :mod:`~lmfs.scaling.powerlaw` — power-law fits ``y = k·C^a`` in log space.
* :mod:`~lmfs.scaling.isoflop` — Approaches 1 and 2 with bootstrap intervals.
* :mod:`~lmfs.scaling.parametric` — Approach 3: ``L = E + A/N^α + B/D^β`` by Huber on log residuals.
* :mod:`~lmfs.scaling.tables` — reading the stored tables into pandas.
* :mod:`~lmfs.scaling.analysis` — the three approaches side by side, predictions at target budgets.
* :mod:`~lmfs.scaling.simulator` — a budgeted stand-in for the course's training API, and a strategy.
* :mod:`~lmfs.scaling.shapes`, :mod:`~lmfs.scaling.sweep` — grids of tiny real lmfs runs.
"""
