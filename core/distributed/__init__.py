"""Where a run executes: in this process or on a dask.distributed engine."""
