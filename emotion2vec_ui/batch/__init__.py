"""Many files into one resumable results table: rows, table, manifests, the Ray engine."""

from .run import BatchSummary, iter_batch_rows, run_batch

__all__ = ["BatchSummary", "iter_batch_rows", "run_batch"]
