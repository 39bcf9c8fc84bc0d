"""Turn the children's measurements into the printed table, the targets, and the RESULTS.md entry.

Units: times in seconds, throughput in audio seconds per wall second, memory in GB
(1 GB = 1024 MB). The ratio column always reads "how many times better the project is
than the reference": reference time / project time, project throughput / reference
throughput, reference memory / project memory (> 1 means the project is better).
"""

from __future__ import annotations

import os
import platform
import statistics
from dataclasses import dataclass, replace
from datetime import datetime, timezone

import numpy as np

# Targets from the issue.
THROUGHPUT_TARGET = 1.5  # project clip-set throughput >= 1.5 x reference
INT8_THROUGHPUT_TARGET = 3.0  # ... and >= 3 x with int8
INT8_MIN_COSINE = 0.99  # int8 drift: embedding cosine at least this
TOP_AGREEMENT_TARGET = 0.98  # int8 drift: top emotion unchanged on at least this share of clips
ONNX_MAX_SCORE_DIFF = 1e-4  # the fp32 ONNX export equals the torch path within this
FIRST_REQUEST_TARGET = 1.2  # first request <= 1.2 x steady state
LONG_FRAME_PEAK_GB = 4.0  # the long file in frame mode peaks under 4 GB
LONG_VS_PARTS_TARGET = 1.3  # long file (frame) <= 1.3 x the same audio as 30 s clips
DRIFT_MIN_COSINE = 0.999  # reduced precision may become the CUDA default only at or above this
DRIFT_MAX_SCORE_DIFF = 0.01  # ... and at or below this

COLUMNS = ("Measure", "Project", "Reference", "Ratio (>1: project better)", "Target", "Status")


@dataclass
class Row:
    """One line of the table; figures are already formatted."""

    measure: str
    project: str
    reference: str = "–"
    ratio: str = "–"
    target: str = ""
    status: str = ""


# -- formatting -----------------------------------------------------------------------------


def seconds(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value:.3f} s" if value < 10 else f"{value:.1f} s"


def rate(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f} audio s/s"


def gigabytes(megabytes: float | None) -> str:
    return "–" if megabytes is None else f"{megabytes / 1024:.2f} GB"


def factor(value: float | None) -> str:
    return "–" if value is None or not np.isfinite(value) else f"{value:.2f}x"


def status(met: bool | None) -> str:
    return "–" if met is None else ("met" if met else "NOT MET")


def ungraded(rows: list[Row]) -> list[Row]:
    """`rows` with their status cleared (targets kept, for reading)."""
    return [replace(row, status="–" if row.status else "") for row in rows]


def divide(a: float | None, b: float | None) -> float | None:
    """a / b, or None when either is missing or b is zero."""
    return None if a is None or b is None or b == 0 else a / b


def markdown_table(rows: list[Row]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for row in rows:
        cells = (row.measure, row.project, row.reference, row.ratio, row.target, row.status)
        lines.append("| " + " | ".join(cell.replace("|", "/") for cell in cells) + " |")
    return "\n".join(lines)


# -- rows -----------------------------------------------------------------------------------


def startup_rows(project: dict, reference: dict | None, repeats: int) -> list[Row]:
    """Model load, first 10 s request and steady state (median of `repeats`), project vs reference."""
    if "error" in project:
        return [Row("start-up and 10 s clip", f"failed: {project['error']}")]
    ref_ok = reference is not None and "error" not in reference
    ref = reference if ref_ok else {}
    steady, ref_steady = statistics.median(project["steady_s"]), statistics.median(ref["steady_s"]) if ref_ok else None
    first_ratio, ref_first_ratio = divide(project["first_s"], steady), divide(ref.get("first_s"), ref_steady)
    return [
        Row("model load (s, imports excluded)", seconds(project["load_s"]), seconds(ref.get("load_s")),
            factor(divide(ref.get("load_s"), project["load_s"]))),
        Row("10 s clip, first request after load (s)", seconds(project["first_s"]), seconds(ref.get("first_s")),
            factor(divide(ref.get("first_s"), project["first_s"]))),
        Row(f"10 s clip, file to result, steady state (s, median of {repeats})", seconds(steady), seconds(ref_steady),
            factor(divide(ref_steady, steady)), "no slower than reference",
            status(None if ref_steady is None else steady <= ref_steady)),
        Row("first request / steady state", factor(first_ratio), factor(ref_first_ratio), "–",
            f"<= {FIRST_REQUEST_TARGET}x", status(first_ratio <= FIRST_REQUEST_TARGET)),
    ]


def reference_rate(before: dict | None, after: dict | None, clips: list[dict],
                   common: list[int]) -> tuple[float | None, list[float]]:
    """The reference's clip-set throughput on the `common` clips, and that of each run.

    `before` is the reference_short run, `after` the reference_clips run (its per_clip
    covers just the common clips); a run that failed or did not happen is left out. The
    rate compared with is the audio over the mean of the runs' wall times.
    """
    walls = []
    if reference_wall(before, common) is not None:
        walls = [wall for wall in (reference_wall(before, common), reference_wall(after)) if wall is not None]
    if not walls:
        return None, []
    audio_s = sum(clips[i]["seconds"] for i in common)
    return divide(audio_s, statistics.mean(walls)), [divide(audio_s, wall) for wall in walls]


def reference_wall(result: dict | None, common: list[int] | None = None) -> float | None:
    """A reference run's wall time over its clips (`common`: the indexes to count; None: every
    clip, as a run of just the common clips has them), or None when the run or a clip failed."""
    if result is None or "error" in result:
        return None
    clips = result["per_clip"] if common is None else [result["per_clip"][i] for i in common]
    return sum(clip["wall_s"] for clip in clips) if all("wall_s" in clip for clip in clips) else None


def reference_runs_row(rates: list[float], clips: int) -> Row:
    """The reference's throughput in its run before and its run after the project's (they should agree)."""
    change = 100 * (rates[1] / rates[0] - 1)
    return Row(f"reference clip-set throughput, the {clips} clips it read: before / after the project's runs "
               f"(ratios use the mean)", "–", f"{rates[0]:.2f} / {rates[1]:.2f} audio s/s ({change:+.1f} %)")


def round_ratios(run: dict, label: str, common: list[int]) -> list[float]:
    """Configuration `label`'s clip-set ratio to the reference in each round (rounds that
    failed left out): round 1 is the main run, between the reference's runs before and
    after; each later round is between the reference run before it and its own. A round
    compares with the mean wall time of its two reference runs on the `common` clips."""
    first = run["short"].get(label, {})
    if "error" in first or run["reference"] is None or "error" in run["reference"]:
        return []
    walls = [reference_wall(run["reference"], common)]
    walls += [reference_wall(result) for result in [run["reference_after"], *(r["reference"] for r in run["rounds"])]]
    projects = [first["common_s"] if first["common_s"] is not None else first["batch_s"]]
    for later in run["rounds"]:
        result = later["project"].get(label, {"error": "not run"})
        projects.append(None if "error" in result else result["common_s"])
    ratios = []
    for number, project_s in enumerate(projects):
        before, after = walls[number], walls[number + 1]
        if project_s is not None and before is not None and after is not None:
            ratios.append(divide(statistics.mean([before, after]), project_s))
    return ratios


def rounds_row(label: str, ratios: list[float], rounds: int) -> Row:
    """The median of a configuration's per-round ratios, graded against its target."""
    target = INT8_THROUGHPUT_TARGET if "int8" in label else THROUGHPUT_TARGET
    median = statistics.median(ratios) if ratios else None
    return Row(f"clip-set throughput, {label}: ratio in each of {rounds} rounds between two reference runs "
               f"(median graded)", ", ".join(factor(r) for r in ratios) or "failed", "–", factor(median),
               f">= {target}x reference", status(None if median is None else median >= target))


def throughput_rows(label: str, project: dict, reference: dict | None, ref_rate: float | None,
                    clips: list[dict], common: list[int], repeats: int, single_row: bool) -> list[Row]:
    """Clip-set throughput of one project configuration vs the reference, on the clips both read.

    `ref_rate` is the reference's throughput on those clips (reference_rate; None without a
    reference); `common` indexes the clips the reference could read (all of them without a
    reference); `single_row` adds this configuration's steady-state 10 s request time.
    """
    if "error" in project:
        return [Row(f"clip set, {label}", f"failed: {project['error']}")]
    total_s = sum(clip["seconds"] for clip in clips)
    common_s = sum(clips[i]["seconds"] for i in common)
    project_common = divide(common_s, project["common_s"] if project["common_s"] is not None else project["batch_s"])
    rows = []
    if ref_rate is not None:
        ratio = divide(project_common, ref_rate)
        target = INT8_THROUGHPUT_TARGET if "int8" in label else THROUGHPUT_TARGET
        rows.append(Row(f"clip-set throughput, {label}: the {len(common)} clips both read", rate(project_common),
                        rate(ref_rate), factor(ratio), f">= {target}x reference",
                        status(None if ratio is None else ratio >= target)))
    rows.append(Row(f"clip-set throughput, {label}: all {len(clips)} clips ({total_s:.0f} s of audio)",
                    rate(divide(total_s, project["batch_s"])), _reference_coverage(reference, clips)))
    if single_row:
        steady = statistics.median(project["steady_s"])
        rows.append(Row(f"10 s clip, steady state, {label} (s, median of {repeats})", seconds(steady)))
    return rows


def _reference_coverage(reference: dict | None, clips: list[dict]) -> str:
    """What the reference did with the whole set: 'read 32 of 40 (failed: m4a x5, webm x3)'."""
    if reference is None:
        return "not run"
    if "error" in reference:
        return f"failed: {reference['error']}"
    failed = [clips[i]["fmt"] for i, item in enumerate(reference["per_clip"]) if "error" in item]
    read = len(clips) - len(failed)
    if not failed:
        return f"read all {read}"
    kinds = ", ".join(f"{fmt} x{failed.count(fmt)}" for fmt in sorted(set(failed)))
    return f"read {read} of {len(clips)} (failed: {kinds})"


def long_rows(long_s: int, parts: int, runs: dict, device: str) -> list[Row]:
    """The long file in utterance and frame mode (time, peak memory) and the 30 s parts comparison."""
    rows = []
    memory_key = "gpu_peak_mb" if device.startswith("cuda") else "peak_rss_mb"
    memory_name = "peak GPU memory" if device.startswith("cuda") else "peak RSS"
    for granularity in ("utterance", "frame"):
        project, reference = runs.get(f"project_{granularity}"), runs.get(f"reference_{granularity}")
        name = f"{long_s} s file, {granularity}"
        if project is None:
            continue
        if "error" in project:
            rows.append(Row(name, f"failed: {project['error']}", _reference_outcome(reference)))
            continue
        ref_ok = reference is not None and "error" not in reference
        rows.append(Row(f"{name}: time (s)", seconds(project["wall_s"]),
                        _reference_outcome(reference),
                        factor(divide(reference["wall_s"], project["wall_s"])) if ref_ok else "–"))
        peak = project[memory_key]
        frame = granularity == "frame" and peak is not None
        ref_peak = gigabytes(reference.get(memory_key)) if reference else "–"
        if reference is not None and not ref_ok and reference.get(memory_key) is not None:
            ref_peak += " (until it failed)"
        rows.append(Row(f"{name}: {memory_name} (GB)", gigabytes(peak), ref_peak,
                        factor(divide(reference.get(memory_key), peak)) if ref_ok else "–",
                        f"< {LONG_FRAME_PEAK_GB:.0f} GB" if frame else "",
                        status(peak / 1024 < LONG_FRAME_PEAK_GB) if frame else ""))
        if device.startswith("cuda"):
            rows.append(Row(f"{name}: peak RSS (GB)", gigabytes(project["peak_rss_mb"]),
                            gigabytes(reference.get("peak_rss_mb")) if reference else "–"))
    parts_run, frame_run = runs.get("project_parts"), runs.get("project_frame")
    if parts_run is not None:
        ok = "error" not in parts_run and frame_run is not None and "error" not in frame_run
        rows.append(Row(f"same audio as {parts} x 30 s files, frame: time (s)",
                        seconds(parts_run.get("wall_s")) if "error" not in parts_run else f"failed: {parts_run['error']}"))
        ratio = divide(frame_run["wall_s"], parts_run["wall_s"]) if ok else None
        rows.append(Row(f"{long_s} s file / {parts} x 30 s files, frame: time ratio", factor(ratio), "–", "–",
                        f"<= {LONG_VS_PARTS_TARGET}x", status(None if ratio is None else ratio <= LONG_VS_PARTS_TARGET)))
    return rows


def _reference_outcome(reference: dict | None) -> str:
    if reference is None:
        return "not run"
    if "error" in reference:
        return f"failed after {reference.get('error_after_s', 0):.1f} s: {reference['error']}"
    return seconds(reference["wall_s"])


def drift_rows(label: str, drift: dict) -> list[Row]:
    """Another precision or runtime vs torch fp32 on the clip set: min embedding cosine,
    max |score difference|, share of clips whose top emotion is unchanged. Targets: the
    reduced-precision default's for bf16/fp16, the issue's for int8, 1e-4 for ONNX fp32."""
    cosine, diff, agree = drift["min_cosine"], drift["max_score_diff"], drift["top_agreement"]
    int8, exact = "int8" in label, label == "onnx fp32"
    min_cosine = INT8_MIN_COSINE if int8 else DRIFT_MIN_COSINE
    max_diff = None if int8 else (ONNX_MAX_SCORE_DIFF if exact else DRIFT_MAX_SCORE_DIFF)
    return [
        Row(f"drift {label} vs fp32: min embedding cosine ({drift['clips']} clips)", f"{cosine:.5f}",
            target=f">= {min_cosine}", status=status(cosine >= min_cosine)),
        Row(f"drift {label} vs fp32: max abs. score difference", f"{diff:.2e}" if diff < 1e-3 else f"{diff:.5f}",
            target="" if max_diff is None else f"<= {max_diff:g}", status="" if max_diff is None else status(diff <= max_diff)),
        Row(f"drift {label} vs fp32: top emotion unchanged", f"{100 * agree:.1f} % of clips",
            target=f">= {100 * TOP_AGREEMENT_TARGET:.0f} %" if int8 else "",
            status=status(agree >= TOP_AGREEMENT_TARGET) if int8 else ""),
    ]


def reference_threads(run: dict) -> str:
    """', reference 4 (funasr's default ncpu ...)': how many threads the reference ran and why."""
    count = run["reference"].get("threads")
    if run.get("reference_threads"):
        return f", reference {count} (set by --reference-threads)"
    oversubscribed = (f"; more than the {core_count()} cores, which on an Intel CPU made MKL's larger float32 products "
                      "many times slower: --reference-threads sets them") if count and count > core_count() else ""
    return f", reference {count} (funasr's default ncpu{oversubscribed})"


def notes(run: dict) -> list[str]:
    """Lines under a device's table: threads used, failed configurations, reference read errors."""
    threads = {label: r.get("threads") for label, r in run["short"].items()}
    reference = run["reference"]
    lanes = run["short"].get("default", {}).get("lanes") or 1
    project = threads.get("default")
    if lanes > 1 and project:
        project = f"{project} (several batches: {lanes} side by side, {project // lanes} each)"
    lines = [f"torch CPU threads: project {project}" + (reference_threads(run) if reference else "")]
    gemm = run["short"].get("default", {}).get("fp32_gemm")
    if gemm:
        lines.append(f"project float32 linear layers: {gemm} (timed against the other at load)")
    conv = run["short"].get("default", {}).get("position_conv")
    if conv:
        lines.append(f"project positional convolutions: {conv} (timed against the other at load)")
    lines += [f"project {label} failed: {r['error']}" for label, r in run["short"].items() if "error" in r]
    after = run.get("reference_after")
    if after is not None and "error" in after:
        lines.append(f"the reference's second clip-set run failed ({after['error']}): ratios use its first run")
    if reference is not None and "error" not in reference:
        errors = {}
        for clip, item in zip(run["clips"], reference["per_clip"]):
            if "error" in item:
                errors.setdefault(item["error"], []).append(clip["fmt"])
        lines += [f"reference could not read {', '.join(sorted(set(fmts)))} ({len(fmts)} of the clips): {error}"
                  for error, fmts in errors.items()]
    return lines


def agreement_row(label: str, max_diff: float, clips: int) -> Row:
    """How far the project's fp32 scores are from the reference's on the clips both read."""
    return Row(f"scores, project {label} vs reference: max abs. difference ({clips} clips)", f"{max_diff:.2e}")


def profile_table(profile: dict) -> str:
    """The per-stage breakdown (ms and share of the total) as markdown."""
    total = profile["total_ms"]
    lines = ["| Stage | ms | share |", "|---|---|---|"]
    for name, ms in profile["stages"].items():
        lines.append(f"| {name} | {ms:.1f} | {100 * ms / total:.1f} % |")
    lines.append(f"| total (file to saved result) | {total:.1f} | 100 % |")
    return "\n".join(lines)


# -- drift ------------------------------------------------------------------------------------


def drift(baseline: dict, other: dict) -> dict:
    """min cosine of the utterance embeddings and max abs. score difference between two runs of the clip set."""
    a, b = np.asarray(baseline["embeddings"], np.float64), np.asarray(other["embeddings"], np.float64)
    cosine = (a * b).sum(axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    scores_a, scores_b = np.asarray(baseline["scores"]), np.asarray(other["scores"])
    diff = np.abs(scores_a - scores_b)
    agreement = float(np.mean(scores_a.argmax(axis=1) == scores_b.argmax(axis=1)))
    return {"min_cosine": float(cosine.min()), "max_score_diff": float(diff.max()), "top_agreement": agreement,
            "clips": len(a)}


def reference_agreement(project: dict, reference: dict, common: list[int]) -> float:
    """max |project score - reference score| over the clips both read, matching labels by name."""
    from emotion2vec_ui.results import token_to_key

    worst = 0.0
    for i in common:
        ref = reference["per_clip"][i]
        ref_scores = {token_to_key(label): score for label, score in zip(ref["labels"], ref["scores"])}
        for label, score in zip(project["labels"], project["scores"][i]):
            worst = max(worst, abs(score - ref_scores[label]))
    return worst


# -- machine and RESULTS.md -------------------------------------------------------------------


def load_average() -> float | None:
    """The 1-minute load average (runnable processes), or None where the OS does not say."""
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else None


def cpu_name() -> str:
    """The CPU's model name with its family and model numbers, which tell generations apart
    where a virtual machine shows only a brand: 'AMD EPYC (family 26, model 2)'."""
    fields: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if not line.strip():
                    break  # the first processor's block is enough
                key, _, value = line.partition(":")
                fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    name = fields.get("model name") or platform.processor() or "unknown CPU"
    if "cpu family" in fields and "model" in fields:
        name += f" (family {fields['cpu family']}, model {fields['model']})"
    return name


def core_count() -> int:
    """The cores this process may run on (its affinity), else all the machine's."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def machine(probe: dict, load_at_start: float | None) -> str:
    """'AMD EPYC (family 26, model 2), 2 cores (...), GPU: none, torch ..., funasr ..., Python ...,
    load average ...'."""
    return (f"{cpu_name()}, {core_count()} cores (hardware: {', '.join(probe['hardware_isa']) or 'no AVX2'}; torch kernels use "
            f"{probe['isa']}, int8 on {probe['int8_engine']}; CPU bf16: {'yes' if probe['cpu_bf16'] else 'no'}), "
            f"GPU: {probe['gpu'] or 'none'}, torch {probe['torch']}, funasr {probe['funasr']}, "
            f"onnxruntime {probe['onnxruntime'] or 'not installed'}, "
            f"Python {platform.python_version()}, 1-min load average {_load(load_at_start)} at start, "
            f"{_load(load_average())} at end (figures are only clean on an otherwise idle machine)")


def _load(value: float | None) -> str:
    return "unknown" if value is None else f"{value:.1f}"


def record(path, title: str, machine_line: str, command: str, body: str) -> None:
    """Append a dated entry (title, machine, command, tables) to RESULTS.md."""
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    entry = f"\n## {stamp}: {title}\n\n- Machine: {machine_line}\n- Command: `{command}`\n\n{body.strip()}\n"
    with open(path, "a", encoding="utf-8") as results:
        results.write(entry)
