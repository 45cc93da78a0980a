"""Measuring the model: timing helpers, the model benchmark (``lmfs bench model``) and torch.profiler runs
(``lmfs profile``) with a kernel-time summary for the report. Heavy imports happen inside the functions."""
