"""Benchmark: the project vs the original funasr AutoModel way, on the real plus_large architecture.

    python bench/benchmark.py                  # full: large checkpoint, 40 clips, 10 min file
    python bench/benchmark.py --tiny           # tiny checkpoint, 4 short clips, 40 s file (a test)
    python bench/benchmark.py --record         # also append the tables to bench/RESULTS.md
    python bench/benchmark.py --isa avx2       # the whole comparison with torch limited to AVX2

The real weights are not needed: a random-weight checkpoint with the published sizes
(built once into bench/cache/) costs the same to run. Every measured configuration runs
in its own child process, forked from a server that has torch and funasr imported, so
its peak memory (ru_maxrss) is its own and no thread or allocator setting leaks from one
configuration into another. Measured on each device (CPU; CUDA when torch sees a GPU):

1. start-up and a single 10 s clip, file to result: model load, first request, steady state;
2. clip-set throughput (audio seconds per wall second): the project with default
   settings and each precision option, vs the reference one file at a time (the
   reference's clip set runs before and again after the project's: ratios use the mean);
3. the long file, utterance and frame mode: time and peak memory; the reference in a
   child capped in memory and time; the same audio as 30 s files through the project;
4. precision drift of each reduced precision (and of the ONNX exports) vs fp32 over the
   clip set: embedding cosine, largest score difference, top-emotion agreement;
5. a per-stage profile of the project on one 30 s clip.

On the CPU the options are bf16, int8 (quantised transformer linears), and the ONNX
exports (fp32 and int8) on ONNX Runtime; the exports are written once into the cache.
`--isa avx2` makes an AVX-512 machine run torch, oneDNN, MKL and fbgemm with AVX2 code
only (ISA_ENV), as on most laptops and many servers; ONNX Runtime has no such switch, so
its rows keep the machine's own ISA (said in the notes).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import shlex
import sys
import time
from pathlib import Path

import report
import workloads

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
REDUCED_PRECISIONS = {"cpu": ("bf16", "int8", "onnx-fp32", "onnx-int8"), "cuda": ("bf16", "fp16")}
# Environment that limits torch's own kernels, oneDNN, MKL and fbgemm to AVX2 (--isa avx2).
ISA_ENV = {"avx2": {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2",
                    "MKL_ENABLE_INSTRUCTIONS": "AVX2", "FBGEMM_ENABLE_INSTRUCTIONS": "AVX2"}}
FULL = {"size": "large", "clips": 40, "clip_max_s": 30.0, "long_s": 600, "timeout": 3600.0}
TINY = {"size": "tiny", "clips": 4, "clip_max_s": 4.0, "long_s": 40, "timeout": 300.0}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tiny", action="store_true",
                        help="tiny checkpoint, 4 clips of 1-4 s, a 40 s long file: checks the code paths in seconds")
    parser.add_argument("--record", action="store_true", help="append the tables to bench/RESULTS.md")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                        help="auto: the CPU, then CUDA when torch sees a GPU (default)")
    parser.add_argument("--clips", type=int, help="clips in the set (default 40; --tiny 4)")
    parser.add_argument("--long-seconds", type=int, help="length of the long file in seconds (default 600; --tiny 40)")
    parser.add_argument("--repeats", type=int, default=5, help="steady-state repeats of the 10 s request (default 5)")
    parser.add_argument("--precisions", help="comma-separated options to try besides fp32 (default: "
                        "bf16,int8,onnx-fp32,onnx-int8 on CPU, without bf16 under --isa avx2; bf16,fp16 on CUDA; "
                        "'none' for none)")
    parser.add_argument("--isa", choices=("native", *ISA_ENV), default="native",
                        help="avx2: limit torch, oneDNN, MKL and fbgemm to AVX2 code (emulates an AVX2-only CPU)")
    parser.add_argument("--rounds", type=int, default=1,
                        help="clip-set rounds: after the first, each runs the project's configurations' clip sets "
                        "again, then the reference's; a round's ratio uses the reference runs before and after "
                        "it, and the table adds the median over the rounds (default 1)")
    parser.add_argument("--skip-reference", action="store_true", help="measure the project only")
    parser.add_argument("--skip-long", action="store_true", help="leave out the long file")
    parser.add_argument("--reference-mem-gb", type=float, default=16.0,
                        help="address-space cap of the reference's long-file child on CPU, GB (default 16, "
                        "at most 80%% of the machine's memory)")
    parser.add_argument("--reference-threads", type=int,
                        help="torch threads of the reference (funasr's ncpu; default: funasr's own default, 4, "
                        "which MKL on Intel CPUs with fewer cores turns very slow)")
    parser.add_argument("--reference-timeout", type=float, default=900.0,
                        help="seconds the reference may spend on the long file (default 900)")
    parser.add_argument("--timeout", type=float, help="seconds any other child may run (default 3600; --tiny 300)")
    parser.add_argument("--cache-dir", type=Path, default=BENCH / "cache", help="where inputs are built once")
    parser.add_argument("--results", type=Path, default=BENCH / "RESULTS.md", help="file --record appends to")
    args = parser.parse_args(argv)
    mode = TINY if args.tiny else FULL
    args.size, args.clip_max_s = mode["size"], mode["clip_max_s"]
    args.clips = args.clips or mode["clips"]
    args.long_seconds = None if args.skip_long else (args.long_seconds or mode["long_s"])
    args.timeout = args.timeout or mode["timeout"]
    return args


class Children:
    """Runs each job in a fresh child forked from a server that has torch and funasr imported."""

    def __init__(self):
        # The fork server imports "preload" by name and ignores our sys.path: give it this folder.
        os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(BENCH), os.environ.get("PYTHONPATH")]))
        self.context = multiprocessing.get_context("forkserver")
        self.context.set_forkserver_preload(["preload"])
        self.count = 0

    def run(self, title: str, job: dict, timeout: float) -> dict:
        """The child's result dict; {"error": ...} when it failed, died or ran past `timeout` seconds."""
        self.count += 1
        log(f"[{self.count}] {title} ...")
        start = time.perf_counter()
        receiver, sender = self.context.Pipe(duplex=False)
        process = self.context.Process(target=workloads.child_main, args=(job, sender), daemon=True)
        process.start()
        sender.close()
        result = None
        try:
            if receiver.poll(timeout):
                result = receiver.recv()
        except EOFError:
            pass  # the child died before sending: reported below
        finally:
            if result is None and process.is_alive():
                process.kill()
            process.join()
            receiver.close()
        elapsed = time.perf_counter() - start
        if result is None:
            code = process.exitcode
            why = f"timed out after {timeout:.0f} s" if code is not None and code < 0 and elapsed >= timeout else (
                f"child exited with code {code}" + (" (killed, e.g. out of memory)" if code == -9 else ""))
            result = {"error": why, "error_after_s": elapsed}
        log(f"    {'failed: ' + result['error'] if 'error' in result else 'done'} ({elapsed:.1f} s)")
        return result


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def devices(choice: str, probe: dict) -> list[str]:
    if choice == "auto":
        return ["cpu", "cuda"] if probe["cuda"] else ["cpu"]
    if choice == "cuda" and not probe["cuda"]:
        raise SystemExit("--device cuda: this torch build sees no CUDA GPU")
    return [choice]


def reduced_precisions(args: argparse.Namespace, device: str) -> list[str]:
    if args.precisions is None:
        # AVX2 CPUs have no bf16 arithmetic: autocast would emulate it slowly.
        return [p for p in REDUCED_PRECISIONS[device] if not (args.isa == "avx2" and p == "bf16")]
    return [] if args.precisions == "none" else [p.strip() for p in args.precisions.split(",") if p.strip()]


def measure_device(children: Children, args: argparse.Namespace, inputs: dict, device: str) -> dict:
    """Every configuration on one device; returns the raw results, keyed by configuration."""
    clips = [clip["path"] for clip in inputs["clips"]]
    base = {"checkpoint": inputs["checkpoint"], "device": device, "single": inputs["single"],
            "repeats": args.repeats, "warmup": inputs["single"], "reference_threads": args.reference_threads}
    run = {"device": device, "clips": inputs["clips"], "short": {}, "long": {}, "reference_threads": args.reference_threads}
    run["reference"] = None if args.skip_reference else children.run(
        f"reference on {device}: start-up, 10 s clip, {len(clips)} clips one at a time",
        {**base, "kind": "reference_short", "clips": clips}, args.timeout)
    run["common"] = common_clips(run["reference"], len(clips))
    common_paths = None if len(run["common"]) == len(clips) else [clips[i] for i in run["common"]]
    jobs = {"default": {**base, "kind": "project_short", "precision": "default", "clips": clips,
                        "common": common_paths}}
    default = children.run(
        f"project on {device}, default settings: start-up, 10 s clip, clip set, profile",
        {**jobs["default"], "profile": inputs["profile"]}, args.timeout)
    run["short"]["default"] = default
    for precision in ["fp32", *reduced_precisions(args, device)]:
        if default.get("precision") == precision:
            continue  # the default run already measured it
        job = jobs[precision] = {**base, "kind": "project_short", "precision": precision, "clips": clips,
                                 "common": common_paths}
        if precision.startswith("onnx-"):
            exported = children.run(
                f"export the checkpoint to ONNX ({precision}, once, into the cache)",
                {"kind": "prepare_onnx", "checkpoint": inputs["checkpoint"], "precision": precision[5:],
                 "folder": f"{inputs['checkpoint']}-{precision}"}, args.timeout)
            if "error" in exported:
                run["short"][precision] = exported
                continue
            job.update(backend="onnx", checkpoint=exported["folder"], precision="default")
        run["short"][precision] = children.run(
            f"project on {device}, {precision}: start-up, 10 s clip, clip set", job, args.timeout)
    run["reference_after"], run["rounds"] = None, []
    if run["reference"] is not None and "error" not in run["reference"]:
        # The reference again, so a change in the machine's load during the project's runs shows
        # (and is averaged) instead of moving every ratio one way.
        run["reference_after"] = children.run(
            f"reference on {device} again: the {len(run['common'])} clips it read, after the project's runs",
            {**base, "kind": "reference_clips", "clips": [clips[i] for i in run["common"]]}, args.timeout)
        run["rounds"] = later_rounds(children, args, jobs, run)
    if inputs["long"]:
        run["long"] = measure_long(children, args, inputs, base)
    return run


def later_rounds(children: Children, args: argparse.Namespace, jobs: dict, run: dict) -> list[dict]:
    """Rounds 2.. of the clip set: each configuration's clips again, then the reference's.
    Returns per round {"project": {label: result}, "reference": result}."""
    rounds, device = [], run["device"]
    common = [run["clips"][i]["path"] for i in run["common"]]
    for number in range(2, args.rounds + 1):
        project = {label: children.run(f"round {number} of {args.rounds}: project on {device}, {label}, clip set",
                                       {**job, "kind": "project_clips"}, args.timeout)
                   for label, job in jobs.items() if "error" not in run["short"].get(label, {})}
        reference = children.run(f"round {number} of {args.rounds}: reference on {device}, clip set",
                                 {**jobs["default"], "kind": "reference_clips", "clips": common}, args.timeout)
        rounds.append({"project": project, "reference": reference})
    return rounds


def measure_long(children: Children, args: argparse.Namespace, inputs: dict, base: dict) -> dict:
    """The long file (utterance, frame), its 30 s parts (frame), and the capped reference."""
    device, runs = base["device"], {}
    for granularity in ("utterance", "frame"):
        runs[f"project_{granularity}"] = children.run(
            f"project on {device}: {args.long_seconds} s file, {granularity}",
            {**base, "kind": "project_long", "precision": "default", "paths": [inputs["long"]],
             "granularity": granularity}, args.timeout)
    runs["project_parts"] = children.run(
        f"project on {device}: the same audio as {len(inputs['parts'])} x 30 s files, frame",
        {**base, "kind": "project_long", "precision": "default", "paths": inputs["parts"], "granularity": "frame"},
        args.timeout)
    if not args.skip_reference:
        cap = reference_cap_bytes(args.reference_mem_gb)
        for granularity in ("utterance", "frame"):
            runs[f"reference_{granularity}"] = children.run(
                f"reference on {device}: {args.long_seconds} s file, {granularity} ("
                + (f"address space capped at {cap / 2**30:.1f} GB, " if device == "cpu" else "")
                + f"at most {args.reference_timeout:.0f} s)",
                {**base, "kind": "reference_long", "paths": [inputs["long"]], "granularity": granularity,
                 "mem_cap_bytes": cap}, args.reference_timeout)
    return runs


def reference_cap_bytes(requested_gb: float) -> int:
    """The reference's address-space cap: the requested GB, at most 80 % of this machine's memory."""
    total = None
    try:
        with open("/proc/meminfo", encoding="utf-8") as info:
            total = next(int(line.split()[1]) * 1024 for line in info if line.startswith("MemTotal:"))
    except (OSError, StopIteration):
        pass
    requested = int(requested_gb * 2**30)
    return min(requested, int(0.8 * total)) if total else requested


def common_clips(reference: dict | None, count: int) -> list[int]:
    """Indexes of the clips the reference read (all of them when it did not run or failed as a whole)."""
    if reference is None or "error" in reference:
        return list(range(count))
    return [i for i, item in enumerate(reference["per_clip"]) if "error" not in item]


def build_tables(run: dict, inputs: dict, args: argparse.Namespace) -> str:
    """The markdown section of one device: the main table, then the profile."""
    device, clips, common = run["device"], inputs["clips"], run["common"]
    default, reference = run["short"]["default"], run["reference"]
    default_label = f"default ({default['precision']})" if "precision" in default else "default"
    rows = report.startup_rows(default, reference, args.repeats)
    ref_rate, ref_runs = report.reference_rate(reference, run["reference_after"], clips, common)
    if len(ref_runs) == 2:
        rows.append(report.reference_runs_row(ref_runs, len(common)))
    for label, result in run["short"].items():
        shown = default_label if label == "default" else label
        rows += report.throughput_rows(shown, result, reference, ref_rate, clips, common, args.repeats,
                                       label != "default")
        if args.rounds > 1 and ref_rate is not None:
            rows.append(report.rounds_row(shown, report.round_ratios(run, label, common), args.rounds))
    rows += report.long_rows(args.long_seconds or 0, len(inputs["parts"]), run["long"], device)
    if args.tiny:  # a few seconds of audio on a tiny model: the speed targets are the full size's
        rows = report.ungraded(rows)
    by_precision = {r["precision"]: r for r in run["short"].values() if "error" not in r}
    fp32 = by_precision.get("fp32")
    for precision, result in by_precision.items():
        if fp32 is not None and precision != "fp32":
            rows += report.drift_rows(precision, report.drift(fp32, result))
    if fp32 is not None and reference is not None and "error" not in reference:
        rows.append(report.agreement_row("fp32", report.reference_agreement(fp32, reference, common), len(common)))
    lines = report.notes(run)
    if args.tiny:
        lines.append("tiny model: a check that every path runs; its timings are noise and its speed rows are "
                     "not graded (the targets are for the full-size model)")
    if args.isa != "native" and any(label.startswith("onnx") for label in run["short"]):
        lines.append(f"ONNX Runtime has no switch to limit its ISA: its rows ran with the machine's own "
                     f"(not {args.isa.upper()})")
    notes = "".join(f"\n- {line}" for line in lines)
    section = f"### {device}\n\n{report.markdown_table(rows)}\n{notes}"
    if "profile" in default:
        section += (f"\n\nProfile, project {default_label} on {device}: one 30 s clip (MP3, 44.1 kHz stereo), "
                    f"file to saved result, mean of {args.repeats}\n\n{report.profile_table(default['profile'])}")
    return section


def without_local_paths(text: str, cache: Path) -> str:
    """`text` with this checkout's and the cache's absolute paths made relative (error messages name files)."""
    return text.replace(str(cache.resolve()) + os.sep, "").replace(str(ROOT) + os.sep, "")


def command_line(argv: list[str]) -> str:
    """How this run was started, with the script path relative to the repository and
    absolute paths elsewhere (a cache, a results file) shown as PATH."""
    script = Path(sys.argv[0]).resolve()
    shown = script.relative_to(ROOT) if script.is_relative_to(ROOT) else Path(script.name)
    args = ["PATH" if os.path.isabs(arg) and not Path(arg).resolve().is_relative_to(ROOT) else arg for arg in argv]
    return shlex.join(["python", str(shown), *args])


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    os.environ.update(ISA_ENV.get(args.isa, {}))  # before the fork server imports torch
    started, load_at_start = time.perf_counter(), report.load_average()
    cores = report.core_count()
    if load_at_start is not None and load_at_start > 0.25 * cores:
        log(f"warning: the 1-min load average is {load_at_start:.1f} on {cores} cores; "
            "other work on this machine will distort the figures")
    children = Children()
    probe = children.run("probe the machine", {"kind": "probe"}, args.timeout)
    if "error" in probe:
        raise SystemExit(f"cannot start a measuring child: {probe['error']}")
    inputs = children.run(
        f"prepare inputs in {args.cache_dir.name}/ ({args.size} checkpoint, {args.clips} clips"
        f"{f', {args.long_seconds} s file' if args.long_seconds else ''})",
        {"kind": "prepare", "cache": str(args.cache_dir.resolve()), "size": args.size, "clips": args.clips,
         "clip_max_s": args.clip_max_s, "long_s": args.long_seconds}, args.timeout)
    if "error" in inputs:
        raise SystemExit(f"cannot prepare the inputs: {inputs['error']}")
    sections = [build_tables(measure_device(children, args, inputs, device), inputs, args)
                for device in devices(args.device, probe)]
    machine = report.machine(probe, load_at_start)
    audio_s = sum(clip["seconds"] for clip in inputs["clips"])
    emulated = f", AVX2 emulated ({' '.join(f'{k}={v}' for k, v in ISA_ENV[args.isa].items())})" if args.isa != "native" else ""
    title = (f"{'tiny' if args.tiny else 'plus_large-size'} random-weight checkpoint, ISA {probe['isa']}{emulated}, "
             f"{len(inputs['clips'])} clips "
             f"({audio_s:.0f} s of audio){f', {args.long_seconds} s file' if args.long_seconds else ''}")
    body = without_local_paths("\n\n".join(sections), args.cache_dir)
    print(f"# Benchmark: {title}\n\nMachine: {machine}\nCommand: {command_line(argv)}\n\n{body}\n")
    log(f"finished in {time.perf_counter() - started:.0f} s")
    if args.record:
        report.record(args.results, title, machine, command_line(argv), body)
        log(f"appended to {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
