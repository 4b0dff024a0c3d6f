"""The read side: trial records and results read back from the storage, reports, the dashboard, the
statistics of repeated configs, and warm starts (earlier results read from sweeps, exports, MLflow and
W&B, checked against a new sweep's space: ``priors``, ``prior_sources``, ``wandb_runs``). Nothing here
changes a running sweep.

Every module here is public.
"""

# The public modules; the others are the package's own.
__all__ = ["dashboard", "priors", "records", "repeats", "report", "results"]
