"""Batch throughput: the batch command's engine against `predict_batch` on the same clips, and Ray's overhead.

    python bench/batch_throughput.py [--size large] [--clips 12] [--clip-max-s 20] [--repeats 2] [--ray]

In one process, on one loaded model: `Recognizer.predict_batch` over the clip set
(results in memory) and `batch.run_batch` over the same clips (results in a fresh
Parquet table, parts committed every ROWS_PER_PART rows), alternating which goes
first; the best of `--repeats` runs of each is reported with their ratio. With
`--ray`, the Ray engine runs the same clips on a local Ray (`ray.init(num_cpus=N)`, one
actor with all N CPUs): its end-to-end time (Ray start, actor start, model load in the
actor, the batch, the commit) against the local engine's (model load + batch); the
difference is Ray's overhead. The clips are the benchmark's clip set (bench/audioset.py),
built once under `--cache`. Times are wall-clock seconds on the CPU.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))
sys.path.insert(0, str(BENCH))

import audioset  # noqa: E402
import report  # noqa: E402

from emotion2vec_ui.batch.run import run_batch  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", choices=("tiny", "large"), default="large", help="checkpoint architecture")
    parser.add_argument("--clips", type=int, default=12, help="clips in the set (default 12)")
    parser.add_argument("--clip-max-s", type=float, default=20.0, help="longest clip in seconds (default 20)")
    parser.add_argument("--repeats", type=int, default=2, help="runs of each engine (default 2; the best is kept)")
    parser.add_argument("--ray", action="store_true", help="also run the Ray engine locally")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda: the per-worker rate of a GPU")
    parser.add_argument("--cpus", type=int, default=os.cpu_count(), help="CPUs for the local Ray (default: all)")
    parser.add_argument("--cache", type=Path, default=BENCH / "cache", help="where the checkpoint and clips are kept")
    return parser.parse_args(argv)


def timed(call) -> tuple[float, object]:
    started = time.perf_counter()
    value = call()
    return time.perf_counter() - started, value


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    load_start = report.load_average()
    inputs = audioset.prepare(args.cache, args.size, args.clips, args.clip_max_s, long_s=None)
    paths = [clip["path"] for clip in inputs["clips"]]
    audio_s = sum(clip["seconds"] for clip in inputs["clips"])

    import torch

    from emotion2vec_ui import load_model

    load_s, model = timed(lambda: load_model(inputs["checkpoint"], device=args.device))
    model.predict_batch(paths[:2], on_error="return")  # libraries and kernels warmed on real clips
    times: dict[str, list[float]] = {"predict_batch": [], "batch": []}
    with tempfile.TemporaryDirectory(prefix="e2v-batch-bench-") as tmp:
        for repeat in range(args.repeats):
            runs = {
                "predict_batch": lambda: model.predict_batch(paths, on_error="return"),
                "batch": lambda r=repeat: run_batch(model, paths, Path(tmp) / f"run{r}.parquet"),
            }
            order = list(runs) if repeat % 2 == 0 else list(reversed(runs))
            for name in order:
                seconds, value = timed(runs[name])
                if name == "batch" and (value.done != len(paths) or value.failed):
                    raise RuntimeError(f"the batch did not recognise every clip: {value.line}")
                times[name].append(seconds)
                print(f"  {name}: {seconds:.2f} s", file=sys.stderr)
        best = {name: min(values) for name, values in times.items()}
        ray_row = run_ray(args, inputs, paths, Path(tmp)) if args.ray else None

    print(f"Machine: {report.cpu_name()}, {report.core_count()} cores, device {args.device}; "
          f"torch {torch.__version__} with {torch.get_num_threads()} threads; "
          f"1-min load average {load_start:.1f} at start, {report.load_average():.1f} at end")
    print(f"Clips: {len(paths)} ({audio_s:.0f} s of audio, 1 to {args.clip_max_s:.0f} s each, mixed formats); "
          f"checkpoint {args.size} (random weights); best of {args.repeats}; model load {load_s:.1f} s\n")
    print("| engine | wall s | audio s per s | files per s | vs predict_batch |")
    print("|---|---|---|---|---|")
    for name, label in (("predict_batch", "`Recognizer.predict_batch` (in memory)"),
                        ("batch", "batch command engine (`run_batch`, Parquet table)")):
        seconds = best[name]
        print(f"| {label} | {seconds:.2f} | {audio_s / seconds:.1f} | {len(paths) / seconds:.2f} | "
              f"{seconds / best['predict_batch']:.3f} |")
    if ray_row:
        local_total = load_s + best["batch"]
        print(f"\nRay engine, local Ray with {args.cpus} CPUs, 1 actor: end to end {ray_row['total']:.1f} s "
              f"(Ray start {ray_row['init']:.1f} s, job {ray_row['job']:.1f} s) against the local engine's "
              f"{local_total:.1f} s (model load {load_s:.1f} s + batch {best['batch']:.1f} s): "
              f"overhead {ray_row['total'] - local_total:.1f} s")
    return 0


def run_ray(args, inputs, paths, tmp: Path) -> dict:
    import ray

    from emotion2vec_ui.batch.ray_engine import run_batch_ray

    init_s, _ = timed(lambda: ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False))
    gpus = 1 if args.device.startswith("cuda") else 0
    try:
        job_s, summary = timed(lambda: run_batch_ray(paths, tmp / "ray.parquet", model=inputs["checkpoint"],
                                                     engine_options={"device": args.device}, workers=1,
                                                     gpus_per_worker=gpus, cpus_per_worker=args.cpus))
    finally:
        ray.shutdown()
    if summary.done != len(paths) or summary.failed:
        raise RuntimeError(f"the Ray batch did not recognise every clip: {summary.line}")
    print(f"  ray: start {init_s:.2f} s, job {job_s:.2f} s", file=sys.stderr)
    return {"init": init_s, "job": job_s, "total": init_s + job_s}


if __name__ == "__main__":
    sys.exit(main())
