"""Many files into one resumable results table: rows, table, manifests, the Ray engine."""
