"""The batch on Ray Data: `python -m emotion2vec_ui batch ... --engine ray [--address ADDR]`.

The inputs still to do become a dataset of paths; a `map_batches` stage with a fixed
pool of actors (`--workers`), each holding one loaded model (and `--gpus-per-worker`
GPUs), decodes and recognises its batch of paths and returns rows. For a local
`--out` the driver streams the rows back and commits them in parts exactly like the
local engine (same table, same resume); for a URI (`s3://...`, `gs://...`) Ray writes
the rows as Parquet files into that folder itself (no resume). Errors, even
unexpected ones inside an actor, become error rows; they never stop the job.
Ray is an optional extra, imported only here.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

from ..engine.recognizer import load_model
from ..errors import Emotion2vecError
from .manifest import BatchInput, discover_inputs
from .run import ROWS_PER_PART, BatchSummary, RowCallback, batch_schema, iter_batch_rows, plan_batch
from .table import SAME_HINTS, ResultTable, error_row, rows_to_table, score_labels, table_schema

INSTALL_HINT = "the Ray engine needs Ray Data: pip install 'ray[data]' (or pip install '.[ray]' in the project folder)"


class RayUnavailableError(Emotion2vecError, ImportError):
    """Ray (with Ray Data) is not installed."""


def import_ray():
    """The `ray` module, or an error that says how to install it."""
    try:
        import ray  # heavy: Ray is an optional extra
        import ray.data  # noqa: F401 heavy: as above
    except ImportError as e:
        raise RayUnavailableError(f"{INSTALL_HINT} ({e})") from e
    return ray


class RecognizerActor:
    """One loaded model per Ray actor: a batch of inputs (pyarrow) -> their rows (pyarrow)."""

    def __init__(self, model, engine_options, granularity, embedding, save_folders, speakers=None):

        self.recognizer = load_model(model, **engine_options)
        self.granularity, self.embedding, self.save_folders = granularity, embedding, save_folders
        self.speakers = speakers
        self.schema = batch_schema(self.recognizer, granularity, embedding)

    def __call__(self, batch):

        items = [BatchInput(**row) for row in batch.to_pylist()]
        try:
            rows = list(iter_batch_rows(self.recognizer, items, self.granularity, self.embedding,
                                        save_folders=self.save_folders, speakers=self.speakers))
        except Exception as e:  # noqa: BLE001 - a failure in one batch must not end the job
            rows = [error_row(item, e, self.recognizer.model_name, self.granularity) for item in items]
        return rows_to_table(rows, self.schema)


def is_uri(out: str | os.PathLike) -> bool:
    """True for `scheme://...` outputs that Ray writes itself (s3, gs, hdfs, ...)."""
    return "://" in str(out)


def run_batch_ray(
    inputs,
    out: str | os.PathLike,
    granularity: str = "utterance",
    embedding: bool = False,
    *,
    model: str | None = None,
    engine_options: dict | None = None,
    address: str | None = None,
    workers: int = 1,
    gpus_per_worker: float = 0.0,
    cpus_per_worker: float = 1.0,
    rows_per_part: int = ROWS_PER_PART,
    retry_failed: bool = False,
    save_folders: str | os.PathLike | None = None,
    on_row: RowCallback | None = None,
    on_start: Callable[[int], None] | None = None,
    speakers=None,
) -> BatchSummary:
    """`run_batch` on Ray Data: the same rows in the same table, recognised by `workers` actors.

    Uses the Ray already initialised in this process, else joins `address`, else
    starts a local Ray (shut down at the end). Each actor takes `rows_per_part`
    inputs at a time. A URI `out` is a folder of Parquet files written by Ray.
    """
    ray = import_ray()
    started = time.monotonic()
    items = inputs if all(isinstance(item, BatchInput) for item in inputs) else discover_inputs(inputs)
    engine_options = dict(engine_options or {})
    if engine_options.get("device") is None and not gpus_per_worker:
        engine_options["device"] = "cpu"  # an actor without a GPU must not pick one up
    own_ray = not ray.is_initialized()
    if own_ray:
        ray.init(address=address, log_to_driver=False, include_dashboard=False)
    try:
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False
        actor_args = (model, engine_options, granularity, embedding, str(save_folders) if save_folders else None,
                      speakers)
        if is_uri(out):
            return _write_uri(ray, items, str(out), actor_args, workers, gpus_per_worker, cpus_per_worker,
                              rows_per_part, started, on_start)
        return _write_local(ray, items, Path(out), actor_args, workers, gpus_per_worker, cpus_per_worker,
                            rows_per_part, retry_failed, started, on_row, on_start)
    finally:
        if own_ray:
            ray.shutdown()


def _dataset(ray, items, actor_args, workers, gpus_per_worker, cpus_per_worker, rows_per_part):
    records = [{"path": i.path, "id": i.id, "size_bytes": i.size_bytes, "mtime_ns": i.mtime_ns} for i in items]
    blocks = max(1, -(-len(records) // rows_per_part))
    return ray.data.from_items(records, override_num_blocks=blocks).map_batches(
        RecognizerActor,
        fn_constructor_args=actor_args,
        batch_size=rows_per_part,
        batch_format="pyarrow",
        compute=ray.data.ActorPoolStrategy(size=workers),
        num_gpus=gpus_per_worker or None,
        num_cpus=cpus_per_worker,
    )


def _write_local(ray, items, out, actor_args, workers, gpus, cpus, rows_per_part, retry_failed,
                 started, on_row, on_start) -> BatchSummary:

    table = ResultTable(out)
    existing = table.read()
    granularity, embedding = actor_args[2], actor_args[3]
    expected = table_schema(score_labels(existing.schema), granularity, embedding) if existing is not None else None
    todo, summary = plan_batch(table, items, expected, retry_failed, existing=existing)
    if on_start:
        on_start(len(todo))
    try:
        if todo:
            dataset = _dataset(ray, todo, actor_args, workers, gpus, cpus, rows_per_part)
            for batch in dataset.iter_batches(batch_size=None, batch_format="pyarrow"):
                # the model's labels, its name and the segment settings (known once its actor
                # ran) against the table's
                first = batch.slice(0, 1).to_pylist()[0] if batch.num_rows else {}
                table.check_schema(batch.schema, existing, {key: first.get(key) for key in SAME_HINTS})
                table.append(batch)
                for row in batch.to_pylist():
                    summary.failed += bool(row["error"])
                    summary.done += not row["error"]
                    summary.audio_seconds += row.get("duration_s") or 0.0
                    if on_row:
                        on_row(row)
    except KeyboardInterrupt:
        summary.interrupted = True
    summary.rows = table.commit()
    summary.seconds = time.monotonic() - started
    return summary


def _write_uri(ray, items, out, actor_args, workers, gpus, cpus, rows_per_part, started, on_start) -> BatchSummary:
    if on_start:
        on_start(len(items))
    dataset = _dataset(ray, items, actor_args, workers, gpus, cpus, rows_per_part).materialize()
    dataset.write_parquet(out)
    errors = dataset.select_columns(["error"]).take_all()
    failed = sum(bool(row["error"]) for row in errors)
    return BatchSummary(out=out, inputs=len(items), done=len(errors) - failed, failed=failed, rows=len(errors),
                        seconds=time.monotonic() - started)
