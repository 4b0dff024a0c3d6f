"""The read side: trial records and results read back from the storage, reports, the dashboard, and
the statistics of repeated configs. Nothing here changes a running sweep."""
