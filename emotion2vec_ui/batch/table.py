"""The results table of a batch: its rows, its columns, and how it is written safely.

One row per input:

    path, id, size_bytes, mtime_ns     the input and its resume key
    duration_s, emotion, confidence    the verdict (null when the input failed)
    score_<label>                      one column per label of the model, probabilities
    second_emotion, second_confidence  the runner-up
    error, error_type                  "" when fine, else the message and the error class
    model, granularity, output_dir     output_dir only with saved folders
    embedding                          when asked: list<float32> (D,), frame mode list<list<float32>> (T, D)
    num_frames, frame_scores, segments frame mode: (T,), (T, K) float32, [{start_s, end_s, emotion, confidence}]
    num_segments, speech_s, segments,  segment mode: the speech segments with their speakers, and the
    segment_settings                   speaker mode and VAD settings they were found with

The table is Parquet, CSV or JSONL by the suffix of its path. A run never writes into
the table itself: finished rows go to part files (Parquet) in the hidden folder
`.NAME.parts/` next to it, each written under a temporary name and renamed into place,
so a part is complete or absent. `commit` merges the table and its parts into a new
file that replaces the table by an atomic rename, then removes the parts; a run killed
at any point leaves the last table intact plus the parts it had finished, and the next
run takes them up. Rows are keyed by path: when a path appears twice the later row wins.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import Emotion2vecError
from ..results import EmotionResult
from .manifest import BatchInput
from .rows import verdict

FORMATS = {".parquet": "parquet", ".csv": "csv", ".jsonl": "jsonl"}
SCORE_PREFIX = "score_"
PARTS_SUFFIX = ".parts"
PART_PREFIX = "part-"
CSV_FIELD_LIMIT = 2**31 - 1  # bytes: an embedding or frame track is one (long) CSV cell
SEGMENT_MIN_S = 0.5  # segments shorter than this merge into the one before (as in result.json)

BASE_FIELDS = [
    pa.field("path", pa.string()),
    pa.field("id", pa.string()),
    pa.field("size_bytes", pa.int64()),
    pa.field("mtime_ns", pa.int64()),
    pa.field("duration_s", pa.float64()),
    pa.field("emotion", pa.string()),
    pa.field("confidence", pa.float64()),
]
TAIL_FIELDS = [
    pa.field("second_emotion", pa.string()),
    pa.field("second_confidence", pa.float64()),
    pa.field("error", pa.string()),
    pa.field("error_type", pa.string()),
    pa.field("model", pa.string()),
    pa.field("granularity", pa.string()),
    pa.field("output_dir", pa.string()),
]
SAME_HINTS = {"model": "that --model", "segment_settings": "those --speakers and --vad-* settings"}
EMPTY_WHEN_FINE = ("error", "error_type")  # "" rather than null, so `error == ""` selects the good rows
VECTOR = pa.list_(pa.float32())
SEGMENT = pa.struct([("start_s", pa.float64()), ("end_s", pa.float64()),
                     ("emotion", pa.string()), ("confidence", pa.float64())])


def _frame_values(result: EmotionResult) -> dict:
    scores = result.frame_scores.astype(np.float32)
    return {"num_frames": len(scores), "frame_scores": list(scores), "segments": result.frame_runs(SEGMENT_MIN_S)}


SPEECH_SEGMENT = pa.struct([("start_s", pa.float64()), ("end_s", pa.float64()), ("speaker", pa.string()),
                            ("emotion", pa.string()), ("confidence", pa.float64()), ("short", pa.bool_()),
                            ("mixed_speakers", pa.bool_())])


def _segment_values(result: EmotionResult) -> dict:
    rows = [{key: seg.to_dict()[key] for key in SPEECH_SEGMENT.names} for seg in result.segments]
    return {"num_segments": len(rows), "speech_s": float(sum(s.duration_s for s in result.segments)), "segments": rows}


# Columns a granularity adds to the base ones: (fields, values of one result). A new
# granularity adds its entry here (and its embedding shape to EMBEDDING_TYPES).
GRANULARITY_COLUMNS: dict[str, tuple[list[pa.Field], Callable[[EmotionResult], dict]]] = {
    "utterance": ([], lambda result: {}),
    "frame": (
        [pa.field("num_frames", pa.int64()), pa.field("frame_scores", pa.list_(VECTOR)),
         pa.field("segments", pa.list_(SEGMENT))],
        _frame_values,
    ),
    "segment": (
        [pa.field("num_segments", pa.int64()), pa.field("speech_s", pa.float64()),
         pa.field("segments", pa.list_(SPEECH_SEGMENT)),
         pa.field("segment_settings", pa.string())],  # speaker mode and VAD settings (batch.segment_settings)
        _segment_values,
    ),
}
EMBEDDING_TYPES = {"utterance": VECTOR, "frame": pa.list_(VECTOR), "segment": pa.list_(VECTOR)}


class BatchTableError(Emotion2vecError, ValueError):
    """The results table cannot be read, or was written with other settings."""


def table_format(path: str | os.PathLike) -> str:
    """"parquet", "csv" or "jsonl" from the path's suffix."""
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise BatchTableError(f"{path}: the results table must end in {', '.join(FORMATS)} (the suffix picks the format)")
    return FORMATS[suffix]


def table_schema(labels: list[str], granularity: str, embedding: bool) -> pa.Schema:
    """The columns of a table for a model's `labels`, a granularity, with or without embeddings."""
    if granularity not in GRANULARITY_COLUMNS:
        raise ValueError(f"granularity must be one of {', '.join(GRANULARITY_COLUMNS)}, not {granularity!r}")
    fields = BASE_FIELDS + [pa.field(SCORE_PREFIX + label, pa.float64()) for label in labels] + TAIL_FIELDS
    if embedding:
        fields.append(pa.field("embedding", EMBEDDING_TYPES[granularity]))
    return pa.schema(fields + GRANULARITY_COLUMNS[granularity][0])


def result_row(item: BatchInput, result: EmotionResult, output_dir: str | None = None) -> dict:
    """The row of an input that was recognised (its verdict as rows.py builds it, the scores
    as one column per label)."""
    fields = verdict(result)
    row = {
        "path": item.path, "id": item.id, "size_bytes": item.size_bytes, "mtime_ns": item.mtime_ns,
        **{SCORE_PREFIX + label: score for label, score in fields.pop("scores").items()}, **fields,
        "error": "", "error_type": "", "model": result.model, "granularity": result.granularity,
        "output_dir": output_dir,
    }
    if result.embedding is not None:
        vector = result.embedding.astype(np.float32)
        row["embedding"] = list(vector) if vector.ndim == 2 else vector
    row.update(GRANULARITY_COLUMNS[result.granularity][1](result))
    return row


def error_row(item: BatchInput, error: BaseException, model: str, granularity: str) -> dict:
    """The row of an input that failed: the verdict columns are null."""
    return {"path": item.path, "id": item.id, "size_bytes": item.size_bytes, "mtime_ns": item.mtime_ns,
            "error": str(error) or type(error).__name__, "error_type": type(error).__name__,
            "model": model, "granularity": granularity}


def rows_to_table(rows: list[dict], schema: pa.Schema) -> pa.Table:
    """Rows (dicts; missing keys are null) as an Arrow table of `schema`."""
    return pa.Table.from_pylist(rows, schema=schema)


# -- reading and writing one file -----------------------------------------------------


def read_table(path: str | os.PathLike) -> pa.Table:
    """A results table written by `write_table`, in any of the three formats."""
    path = Path(path)
    fmt = table_format(path)
    try:
        if fmt == "parquet":
            return pq.read_table(path)
        with open(path, encoding="utf-8", newline="") as f:
            if fmt == "jsonl":
                rows = [json.loads(line) for line in f if line.strip()]
                names = list(rows[0]) if rows else []
            else:
                csv.field_size_limit(CSV_FIELD_LIMIT)
                reader = csv.DictReader(f)
                names = list(reader.fieldnames or [])
                rows = list(reader)
        schema = schema_of_columns(names)
        if fmt == "csv":
            rows = [{name: _from_csv(value, schema.field(name)) for name, value in row.items()} for row in rows]
        return rows_to_table(rows, schema)
    except BatchTableError:
        raise
    except (OSError, ValueError, csv.Error, pa.ArrowException) as e:
        raise BatchTableError(f"{path}: cannot read the results table ({e}); move it away to start a new one") from e


def write_table(table: pa.Table, path: str | os.PathLike) -> None:
    """Write `table` to `path` in the format of its suffix, replacing it atomically."""
    path = Path(path)
    fmt = table_format(path)
    staging = path.parent / f".{path.name}.writing"
    try:
        if fmt == "parquet":
            pq.write_table(table, staging)
        else:
            with open(staging, "w", encoding="utf-8", newline="") as f:
                if fmt == "jsonl":
                    for row in table.to_pylist():
                        f.write(json.dumps(row, ensure_ascii=False) + "\n")
                else:
                    writer = csv.writer(f)
                    writer.writerow(table.column_names)
                    for row in table.to_pylist():
                        writer.writerow(_to_csv(value) for value in row.values())
        _sync(staging)
        os.replace(staging, path)
        _sync(path.parent)
    except BaseException:
        staging.unlink(missing_ok=True)
        raise


def score_labels(schema: pa.Schema) -> list[str]:
    """The labels of a table's score columns, in order."""
    return [name[len(SCORE_PREFIX):] for name in schema.names if name.startswith(SCORE_PREFIX)]


def schema_of_columns(names: list[str]) -> pa.Schema:
    """The schema of a table from its column names (for CSV and JSONL, which carry no types)."""
    labels = [name[len(SCORE_PREFIX):] for name in names if name.startswith(SCORE_PREFIX)]
    for granularity in GRANULARITY_COLUMNS:
        for embedding in (False, True):
            schema = table_schema(labels, granularity, embedding)
            if schema.names == names:
                return schema
    raise BatchTableError(f"the columns {names} are not those of a results table")


def _to_csv(value) -> str:
    if value is None:
        return ""
    if isinstance(value, (list, dict)):
        return json.dumps(value, ensure_ascii=False)
    return str(value)  # floats as repr: they read back exactly


def _from_csv(value: str, field: pa.Field):
    if value == "":
        return "" if field.name in EMPTY_WHEN_FINE else None
    if pa.types.is_string(field.type):
        return value
    if pa.types.is_integer(field.type):
        return int(value)
    if pa.types.is_floating(field.type):
        return float(value)
    return json.loads(value)


def _sync(path: Path) -> None:
    """fsync a file or folder, so a rename never publishes data still in flight."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# -- the table and its parts ----------------------------------------------------------


class ResultTable:
    """A results table on disk with its uncommitted parts: resume keys, append, commit."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.format = table_format(self.path)
        self.parts_dir = self.path.parent / f".{self.path.name}{PARTS_SUFFIX}"

    def part_files(self) -> list[Path]:
        """Committed part files, oldest first (temporary files start with a dot)."""
        if not self.parts_dir.is_dir():
            return []
        return sorted(p for p in self.parts_dir.iterdir() if p.name.startswith(PART_PREFIX) and p.suffix == ".parquet")

    def read(self) -> pa.Table | None:
        """The table and its parts merged (each path once, the latest row), or None if neither exists."""
        tables = [read_table(self.path)] if self.path.exists() else []
        for part in self.part_files():
            try:
                tables.append(pq.read_table(part))
            except (OSError, pa.ArrowException) as e:
                raise BatchTableError(f"{part}: cannot read this part of the results ({e}); delete it to redo its rows") from e
        if not tables:
            return None
        try:
            merged = pa.concat_tables([t.cast(tables[-1].schema) for t in tables])
        except (ValueError, pa.ArrowException) as e:
            raise BatchTableError(f"{self.path}: its parts have other columns than the table ({e}); "
                                  "use another --out or delete the table and its parts") from e
        return latest_per_path(merged)

    def done_keys(self, table: pa.Table | None = None, *, failed: bool = True) -> set[tuple]:
        """Resume keys (path, size, mtime) of the rows present; without the failed ones if `failed=False`."""
        table = self.read() if table is None else table
        if table is None:
            return set()
        columns = table.select(["path", "size_bytes", "mtime_ns", "error"]).to_pydict()
        return {
            (path, size, mtime)
            for path, size, mtime, error in zip(columns["path"], columns["size_bytes"], columns["mtime_ns"], columns["error"])
            if failed or not error
        }

    def check_schema(self, schema: pa.Schema | None, table: pa.Table | None,
                     same: dict[str, str | None] | None = None) -> None:
        """Refuse to add rows of another shape (granularity, embedding, labels) to an existing
        table, or rows whose `same` columns (model, segment_settings) hold other values than
        its rows (a None value: not checked)."""
        if table is None:
            return
        if schema is not None and table.schema.names != schema.names:
            raise BatchTableError(
                f"{self.path} was written with other settings (its columns: {', '.join(table.schema.names)}); "
                "rerun with the same --granularity/--embedding/--model, or choose another --out"
            )
        for column, value in (same or {}).items():
            others = sorted(set(table.column(column).to_pylist()) - {value, None}) if value is not None else []
            if others:
                raise BatchTableError(
                    f"{self.path} holds results of {column} {'; '.join(others)}, not {value}: rerun with "
                    f"{SAME_HINTS[column]}, or choose another --out"
                )

    def append(self, table: pa.Table) -> Path:
        """Write `table` as the next part, complete or not at all; returns its path."""
        self.parts_dir.mkdir(parents=True, exist_ok=True)
        existing = self.part_files()
        number = int(existing[-1].stem[len(PART_PREFIX):]) + 1 if existing else 1
        target = self.parts_dir / f"{PART_PREFIX}{number:06d}.parquet"
        staging = self.parts_dir / f".{target.name}.writing"
        try:
            pq.write_table(table, staging)
            _sync(staging)
            os.replace(staging, target)
            _sync(self.parts_dir)
        except BaseException:
            staging.unlink(missing_ok=True)
            raise
        return target

    def commit(self) -> int:
        """Merge the parts into the table (atomic replace), remove them; returns the row count."""
        table = self.read()
        if table is None:
            return 0
        if self.part_files() or not self.path.exists():
            write_table(table, self.path)
        shutil.rmtree(self.parts_dir, ignore_errors=True)
        return table.num_rows


def latest_per_path(table: pa.Table) -> pa.Table:
    """Keep, for every path, its last row (in the order of those rows)."""
    last: dict[str, int] = {}
    for index, path in enumerate(table.column("path").to_pylist()):
        last[path] = index
    if len(last) == table.num_rows:
        return table
    return table.take(sorted(last.values()))
