"""What runs inside each measured child process: one configuration of the project or the reference.

The parent (benchmark.py) starts one child per configuration and sends it a job dict;
`child_main` runs the job and sends back a result dict with the child's own peak
resident memory (ru_maxrss) and, on CUDA, its peak GPU memory. Times are wall-clock
seconds (CUDA work is synchronised before a clock is read); memory is in MB.

The reference is the original system's way of running the model: funasr's AutoModel
with its defaults, `generate` one file at a time, fp32.
"""

from __future__ import annotations

import contextlib
import io
import resource
import tempfile
import time
from pathlib import Path


def child_main(job: dict, conn) -> None:
    """Entry point of a child: run `job`, send {result fields..., peak_rss_mb, gpu_peak_mb} or {error}."""
    try:
        result = JOBS[job["kind"]](job)
    except Exception as e:  # reported to the parent as this configuration's outcome
        result = {"error": describe_error(e)}
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result["threads"] = _torch_threads()
    result["gpu_peak_mb"] = _gpu_peak_mb(job.get("device", "cpu"))
    conn.send(result)
    conn.close()


def describe_error(error: BaseException) -> str:
    """`Type: first line of the message`, at most 300 characters."""
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0][:300] if lines else ''}".rstrip(": ")


# -- jobs ---------------------------------------------------------------------------------


def probe(job: dict) -> dict:
    """What this machine offers: torch and funasr versions, CUDA GPU, CPU bf16 support, the
    ISA torch's kernels use (after any emulation), the engine of its int8 layers and the
    CPU's own vector extensions."""
    import funasr
    import torch

    from emotion2vec_ui.engine.kernels import _cpu_flags, cpu_isa, int8_engine

    flags = _cpu_flags()
    cuda = torch.cuda.is_available()
    return {
        "isa": cpu_isa(),
        "int8_engine": int8_engine(),
        "hardware_isa": [name for name, flag in (("AVX2", "avx2"), ("AVX-512", "avx512f"), ("AVX512-VNNI", "avx512_vnni"),
                                                  ("AVX512-BF16", "avx512_bf16"), ("AMX", "amx_tile")) if flag in flags],
        "onnxruntime": _onnxruntime_version(),
        "torch": torch.__version__,
        "funasr": funasr.__version__,
        "cuda": cuda,
        "gpu": torch.cuda.get_device_name(0) if cuda else None,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cpu_bf16": bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()),
    }


def _onnxruntime_version() -> str | None:
    try:
        import onnxruntime
    except ImportError:
        return None
    return onnxruntime.__version__


def prepare_onnx(job: dict) -> dict:
    """Export the checkpoint to ONNX (fp32 or int8) into the cache, again when the export
    code is newer than the cached export; returns {"folder"}."""
    from emotion2vec_ui.engine import onnx_export

    folder = Path(job["folder"])
    manifest = folder / onnx_export.MANIFEST  # written last
    if not manifest.is_file() or manifest.stat().st_mtime < Path(onnx_export.__file__).stat().st_mtime:
        onnx_export.export_onnx(folder, job["checkpoint"], int8=job["precision"] == "int8")
    return {"folder": str(folder)}


def prepare_inputs(job: dict) -> dict:
    """Build or reuse the checkpoint and audio (see audioset.prepare)."""
    import audioset

    return audioset.prepare(Path(job["cache"]), job["size"], job["clips"], job["clip_max_s"], job["long_s"])


def project_short(job: dict) -> dict:
    """The project on short inputs: load, first and steady 10 s requests, clip-set throughput.

    Job keys: checkpoint, device, precision ("default" = load_model's own), backend
    ("torch", or "onnx" with checkpoint the exported folder), single, clips (paths),
    common (paths the reference could read, or None), repeats, profile (path of the 30 s
    clip, or None).
    Returns load_s, first_s, steady_s (list), batch_s (all clips), common_s, labels,
    scores (per clip, in label order), embeddings (per clip, (D,) lists), precision, profile.
    The timed clip-set run asks for embeddings (for the drift figures): the mean frame
    features it computes anyway.
    """
    import emotion2vec_ui.engine.recognizer  # noqa: F401 (imported before the load is timed)

    device = job["device"]
    onnx = job.get("backend", "torch") == "onnx"
    load_s, model = timed(device, lambda: _load_project(job))
    first_s, _ = timed(device, lambda: model.predict(job["single"]))
    steady = [timed(device, lambda: model.predict(job["single"]))[0] for _ in range(job["repeats"])]
    batch_s, results = timed(device, lambda: model.predict_batch(job["clips"], embedding=True))
    common_s = None
    if job["common"] is not None:
        common_s, _ = timed(device, lambda: model.predict_batch(job["common"]))
    out = {
        "precision": f"onnx {model.backend.precision}" if onnx else model.backend.precision,
        "fp32_gemm": _fp32_gemm(model.backend),
        "position_conv": _position_conv(model.backend),
        "lanes": model.backend.lanes,
        "load_s": load_s,
        "first_s": first_s,
        "steady_s": steady,
        "batch_s": batch_s,
        "common_s": common_s,
        "labels": model.labels,
        "scores": [[r.scores[label] for label in model.labels] for r in results],
        "embeddings": [r.embedding.tolist() for r in results],
    }
    if job.get("profile"):
        out["profile"] = profile(model, job["profile"], job["repeats"])
    return out


def project_clips(job: dict) -> dict:
    """The project's clip set again, after one warm-up request (a later round; job keys as
    project_short's). Returns common_s: the wall time of the clips the reference read
    (all of them when `common` is None)."""
    device = job["device"]
    model = _load_project(job)
    model.predict(job["single"])
    common_s, _ = timed(device, lambda: model.predict_batch(job["common"] or job["clips"]))
    return {"common_s": common_s}


def _load_project(job: dict):
    """The project's model as `job` asks: its checkpoint, device, precision and backend."""
    from emotion2vec_ui import load_model

    options = {} if job["precision"] == "default" else {"precision": job["precision"]}
    if job.get("backend", "torch") == "onnx":
        options = {"backend": "onnx"}
    return load_model(job["checkpoint"], device=job["device"], **options)


def reference_short(job: dict) -> dict:
    """The reference on short inputs: AutoModel build, first and steady 10 s requests, the clip set.

    Clips it cannot read are recorded with their error and left out of its timing.
    Returns load_s, first_s, steady_s (list), per_clip (list of {wall_s, scores, labels} or {error}).
    """
    device = job["device"]
    load_s, ref = timed(device, lambda: build_reference(job["checkpoint"], device, job.get("reference_threads")))
    first_s, _ = timed(device, lambda: reference_generate(ref, job["single"]))
    steady = [timed(device, lambda: reference_generate(ref, job["single"]))[0] for _ in range(job["repeats"])]
    return {"load_s": load_s, "first_s": first_s, "steady_s": steady,
            "per_clip": _reference_clip_set(ref, device, job["clips"])}


def reference_clips(job: dict) -> dict:
    """The reference's clip set again, after one warm-up request (the bracketing run).

    Returns per_clip as reference_short does.
    """
    device = job["device"]
    ref = build_reference(job["checkpoint"], device, job.get("reference_threads"))
    reference_generate(ref, job["single"])
    return {"per_clip": _reference_clip_set(ref, device, job["clips"])}


def _reference_clip_set(ref, device: str, paths: list[str]) -> list[dict]:
    """One timed `generate` per file: {wall_s, labels, scores}, or {error} for a file it cannot read or run."""
    per_clip = []
    for path in paths:
        try:
            wall_s, output = timed(device, lambda path=path: reference_generate(ref, path))
        except Exception as e:  # a file the reference cannot read or run: its outcome for that clip
            per_clip.append({"error": describe_error(e)})
            continue
        per_clip.append({"wall_s": wall_s, "labels": list(output["labels"]), "scores": list(output["scores"])})
    return per_clip


def project_long(job: dict) -> dict:
    """The project on one long file, or on a list of parts run as one batch.

    Job keys: checkpoint, device, precision, warmup (path), paths, granularity.
    Returns load_s, wall_s (the measured call), frames (total frame-score rows, 0 in utterance mode).
    """
    from emotion2vec_ui import load_model

    device = job["device"]
    options = {} if job["precision"] == "default" else {"precision": job["precision"]}
    load_s, model = timed(device, lambda: load_model(job["checkpoint"], device=device, **options))
    model.predict(job["warmup"])
    paths, granularity = job["paths"], job["granularity"]
    if len(paths) == 1:
        wall_s, results = timed(device, lambda: [model.predict(paths[0], granularity=granularity)])
    else:
        wall_s, results = timed(device, lambda: model.predict_batch(paths, granularity=granularity))
    frames = sum(len(r.frame_scores) for r in results if r.frame_scores is not None)
    return {"precision": model.backend.precision, "load_s": load_s, "wall_s": wall_s, "frames": frames}


def reference_long(job: dict) -> dict:
    """The reference on the long file under a memory cap (CPU: RLIMIT_AS of `mem_cap_bytes`).

    The cap is set after the model is built and warmed up, so it constrains the measured
    call. On CUDA the cap is the GPU itself (an address-space limit would break CUDA).
    An error (e.g. out of memory) is this configuration's result, reported with how long
    the attempt ran. Returns load_s, wall_s, frames, or error and error_after_s.
    """
    device = job["device"]
    load_s, ref = timed(device, lambda: build_reference(job["checkpoint"], device, job.get("reference_threads")))
    reference_generate(ref, job["warmup"])
    if device == "cpu" and job.get("mem_cap_bytes"):
        cap = int(job["mem_cap_bytes"])
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    frame_mode = job["granularity"] == "frame"
    start = time.perf_counter()
    try:
        wall_s, output = timed(device, lambda: reference_generate(ref, job["paths"][0], job["granularity"]))
    except Exception as e:  # out of memory and the like: the outcome being measured
        return {"load_s": load_s, "error": describe_error(e), "error_after_s": time.perf_counter() - start}
    frames = len(output["feats"]) if frame_mode else 0
    return {"load_s": load_s, "wall_s": wall_s, "frames": frames}


JOBS = {
    "probe": probe,
    "prepare": prepare_inputs,
    "prepare_onnx": prepare_onnx,
    "project_short": project_short,
    "project_clips": project_clips,
    "reference_short": reference_short,
    "reference_clips": reference_clips,
    "project_long": project_long,
    "reference_long": reference_long,
}


# -- the reference ------------------------------------------------------------------------


def build_reference(folder: str, device: str, threads: int | None = None):
    """funasr's AutoModel on `folder` with its defaults (no ncpu: the original does not pass
    it), or with `threads` as its ncpu when given."""
    from emotion2vec_ui.engine.torch_backend import contained_funasr

    with contained_funasr():
        from funasr import AutoModel

        return AutoModel(model=folder, disable_update=True, device=device, **({"ncpu": threads} if threads else {}))


def reference_generate(ref, path: str, granularity: str = "utterance") -> dict:
    """One `generate` call on one file; frame mode asks for the frame features (its only frame output)."""
    from emotion2vec_ui.engine.torch_backend import contained_funasr

    with contained_funasr(), contextlib.redirect_stderr(io.StringIO()):  # its tqdm bar
        output = ref.generate(input=path, granularity=granularity, extract_embedding=granularity == "frame")
    return output[0]


# -- profile ------------------------------------------------------------------------------


def profile(model, path: str, repeats: int) -> dict:
    """Mean milliseconds per stage of one file-to-saved-result request on `path` (already warm).

    Stages: read (file bytes from disk), decode (PyAV + resampling), normalise, conv front
    end, positional convolution with masks and norms, attention (qkv, attention, output
    projection), feed-forward (MLP and block norms), batch transfer (padding, device
    copies), head, other (windows, stitching, result) and save (the outputs folder).
    Returns {"stages": {name: ms}, "total_ms": ms}.
    """
    from emotion2vec_ui import save_recognition

    clock = StageClock(model.backend.device)
    hooks = _instrument(model.backend, clock)
    try:
        with tempfile.TemporaryDirectory(prefix="bench-profile-") as out:
            for _ in range(repeats):
                start = clock.now()
                with clock.stage("read"):
                    data = Path(path).read_bytes()
                with clock.stage("decode"):
                    audio = model.decode(data, name=Path(path).name)
                with clock.stage("request"):
                    result = model.predict(audio)
                with clock.stage("save"):
                    save_recognition(result, audio, out)
                clock.add("total", clock.now() - start)
    finally:
        for undo in hooks:
            undo()
    ms = {name: 1000 * seconds / repeats for name, seconds in clock.totals.items()}
    stages = {
        "read file": ms["read"],
        "decode + resample": ms["decode"],
        "normalise": ms["prepare"],
        "conv front end": ms["conv"],
        "positional conv, masks, norms": ms["forward"] - ms["conv"] - ms["blocks"],
        "attention (qkv, attention, projection)": ms["blocks"] - ms["feed-forward"],
        "feed-forward (MLP, block norms)": ms["feed-forward"],
        "batch + device copies": ms["encode"] - ms["forward"],
        "head": ms["head"],
        "other (windows, results)": ms["request"] - ms["encode"] - ms["prepare"] - ms["head"],
        "save outputs folder": ms["save"],
    }
    return {"stages": stages, "total_ms": ms["total"]}


class StageClock:
    """Accumulates wall seconds per named stage; synchronises CUDA before reading the clock."""

    def __init__(self, device: str):
        import torch

        self.cuda = str(device).startswith("cuda")
        self.torch = torch
        self.totals: dict[str, float] = {}

    def now(self) -> float:
        if self.cuda:
            self.torch.cuda.synchronize()
        return time.perf_counter()

    def add(self, name: str, seconds: float) -> None:
        self.totals[name] = self.totals.get(name, 0.0) + seconds

    @contextlib.contextmanager
    def stage(self, name: str):
        start = self.now()
        try:
            yield
        finally:
            self.add(name, self.now() - start)


def _instrument(backend, clock: StageClock) -> list:
    """Time the backend's methods and modules into `clock`; returns undo callables.

    The backend's methods are wrapped on the instance: prepare, encode, _forward, logits;
    _local_features (the conv front end and feature projection), the transformer's
    `block` and `mlp` (its feed-forward part); the blocks' norms get forward hooks and
    count as feed-forward.
    """
    methods = [
        (backend, "prepare", "prepare"), (backend, "encode", "encode"), (backend, "_forward", "forward"),
        (backend, "logits", "head"), (backend, "_local_features", "conv"),
        (backend.transformer, "block", "blocks"), (backend.transformer, "mlp", "feed-forward"),
    ]
    undo = [_wrap_method(obj, method, name, clock) for obj, method, name in methods]
    for norm in (part for block in backend.blocks for part in (block.norm1, block.norm2)):
        undo.extend(_time_module(norm, "feed-forward", clock))
    return undo


def _wrap_method(obj, method: str, name: str, clock: StageClock):
    original = getattr(obj, method)

    def timed_method(*args, **kwargs):
        with clock.stage(name):
            return original(*args, **kwargs)

    setattr(obj, method, timed_method)
    clock.add(name, 0.0)
    return lambda: delattr(obj, method)


def _time_module(module, name: str, clock: StageClock) -> list:
    starts = []
    pre = module.register_forward_pre_hook(lambda *_: starts.append(clock.now()))
    post = module.register_forward_hook(lambda *_: clock.add(name, clock.now() - starts.pop()))
    return [pre.remove, post.remove]


# -- helpers ------------------------------------------------------------------------------


def timed(device: str, call):
    """(wall seconds, return value) of `call()`, with CUDA work finished before the clock stops."""
    import torch

    cuda = str(device).startswith("cuda")
    if cuda:
        torch.cuda.synchronize()
    start = time.perf_counter()
    value = call()
    if cuda:
        torch.cuda.synchronize()
    return time.perf_counter() - start, value


def _fp32_gemm(backend) -> str | None:
    """Which float32 GEMM the torch backend picked at load (kernels.pick_linear)."""
    from emotion2vec_ui.engine.kernels import onednn_linear

    linear = getattr(backend, "linear", None)
    if linear is None:
        return None
    return "oneDNN" if linear is onednn_linear else "F.linear (MKL on the CPU)"


def _position_conv(backend) -> str | None:
    """How the torch backend runs its positional convolutions (kernels.pick_time_major_conv)."""
    from emotion2vec_ui.engine.kernels import conv_channel_major

    transformer = getattr(backend, "transformer", None)
    if transformer is None:
        return None
    return "on a channel-major copy" if transformer.conv is conv_channel_major else "channels-last"


def _torch_threads() -> int | None:
    """torch's intra-op CPU threads as the configuration left them (funasr sets its own)."""
    import sys

    torch = sys.modules.get("torch")
    return torch.get_num_threads() if torch is not None else None


def _gpu_peak_mb(device: str) -> float | None:
    """Peak GPU memory allocated by torch in this process, in MB (None off CUDA)."""
    if not str(device).startswith("cuda"):
        return None
    import torch

    if not torch.cuda.is_initialized():
        return None
    return torch.cuda.max_memory_allocated() / 2**20
