"""The read side: trial records and results read back from the storage, reports, the dashboard, and
the statistics of repeated configs. Nothing here changes a running sweep.

Every module here is public.
"""

# The public modules; the others are the package's own.
__all__ = ["dashboard", "records", "repeats", "report", "results"]
