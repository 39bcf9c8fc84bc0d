"""From decoded audio to EmotionResults: windows for long audio, batches of many clips.

Every input is cut into windows of at most `window_s` seconds that overlap by
`context_s` on each side; each window keeps only the frames at least `context_s`
from its cuts (or at the file's ends), so the stitched track has exactly the frames of
the whole file: T = floor((N - 400) / 320) + 1. An input shorter than one window is a
single window: exactly the unwindowed forward pass. The windows of many inputs are
sorted by length and run in padded batches: at most `batch_s` seconds of audio in
flight, shared by the backend's lanes (CPU: two batches side by side, each on half the
cores), while a worker thread decodes the next inputs.

Utterance scores are the head applied to the mean of all frame features (funasr's
definition); frame scores are the head applied to each frame, so the mean of the
frame logits equals the utterance logits.
"""

from __future__ import annotations

import io
import os
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field

import numpy as np
import soundfile as sf

from ..audio.decode import SAMPLE_RATE, Audio, AudioLimits, clip_warnings, load_audio
from ..errors import Emotion2vecError, ModelLoadError
from ..results import EmotionResult, build_result
from ..segments.conversation import recognize_segments
from .backend import BACKENDS, check_device, check_window, device_kind
from .onnx_backend import load_onnx_backend
from .options import check_granularity, check_options

ProgressCallback = Callable[[float, str], None]  # (fraction done 0..1, description)

DEFAULT_WINDOW_S = 30.0  # longest piece of audio the model sees at once
DEFAULT_CONTEXT_S = 2.0  # overlap on each side of a cut, in seconds
DEFAULT_BATCH_S = {"cpu": 60.0, "cuda": 480.0}  # padded audio seconds in flight (all lanes)
DECODE_CHUNK = 16  # inputs decoded ahead while the model runs
MIN_FILL = 0.9  # a batch's shortest window is at least this fraction of its longest


@dataclass(frozen=True)
class Window:
    """One forward pass over samples [start, stop) of an input, keeping frames [keep_from, keep_to)."""

    start: int  # sample index in the input
    stop: int
    keep_from: int  # frame index within the window
    keep_to: int


def plan_windows(num_samples: int, hop: int, field: int, window_frames: int, context_frames: int) -> list[Window]:
    """Cut an input of `num_samples` into windows whose kept frames tile all its frames once.

    `hop` and `field` are the frame hop and receptive field in samples (320, 400).
    Window starts are multiples of `hop`, so window frame j is input frame start/hop + j.
    """
    total = (num_samples - field) // hop + 1
    if total <= window_frames:
        return [Window(0, num_samples, 0, total)]
    step = window_frames - 2 * context_frames
    if step < 1:
        raise ValueError("the window must be longer than twice its context")
    windows, first, emitted = [], 0, 0
    while first + window_frames < total:
        keep_to = window_frames - context_frames
        windows.append(Window(first * hop, (first + window_frames - 1) * hop + field, emitted - first, keep_to))
        emitted = first + keep_to
        first = emitted - context_frames
    first = total - window_frames  # the last window ends with the input
    windows.append(Window(first * hop, num_samples, emitted - first, window_frames))
    return windows


@dataclass
class Recognition:
    """One input of a batch: its decoded audio and result, or the error that stopped it."""

    index: int
    name: str
    audio: Audio | None = None
    result: EmotionResult | None = None
    error: Emotion2vecError | None = None


@dataclass
class _Track:
    """Per-input accumulator of window outputs: only what the result needs is kept."""

    audio: Audio
    normalization: tuple[float, float]  # (shift, scale) for the model input, whole-input statistics
    windows: list[Window]
    feature_sum: np.ndarray | float = 0.0  # (D,) float64 sum of all kept frame features
    frame_logits: dict[int, np.ndarray] = field(default_factory=dict)  # window -> (t, K), frame mode
    frame_features: dict[int, np.ndarray] = field(default_factory=dict)  # window -> (t, D), frame embeddings

    def window_input(self, window: int, backend) -> np.ndarray:
        """The normalised model input of one window: (stop - start,) float32."""
        w = self.windows[window]
        return backend.prepare(self.audio.waveform[w.start : w.stop], self.normalization)

    def add(self, window: int, kept: np.ndarray, backend, granularity: str, embedding: bool) -> None:
        """Take the kept frame features (t, D) of one window."""
        self.feature_sum = self.feature_sum + kept.sum(axis=0, dtype=np.float64)
        if granularity == "frame":
            self.frame_logits[window] = backend.logits(kept)
            if embedding:
                self.frame_features[window] = kept

    def stitched(self, pieces: dict[int, np.ndarray]) -> np.ndarray:
        """Per-window pieces concatenated in window order: (T, ...)."""
        ordered = [pieces[w] for w in range(len(self.windows))]
        return np.concatenate(ordered) if len(ordered) > 1 else ordered[0]


class Recognizer:
    """Speech emotion recognition on a loaded checkpoint (see `load_model`).

    Safe to share between threads: decoding runs concurrently, the model one call's
    batches at a time (a lock), on every core or side by side in the backend's lanes.
    """

    def __init__(
        self,
        backend,
        window_s: float = DEFAULT_WINDOW_S,
        context_s: float = DEFAULT_CONTEXT_S,
        batch_s: float | None = None,
        limits: AudioLimits | None = None,
        vad=None,
    ):

        check_window(window_s)  # WindowTooLongError past MAX_WINDOW_S
        self.backend = backend
        hop = backend.geometry.hop
        self.window_frames = int(window_s * SAMPLE_RATE) // hop
        self.context_frames = int(round(context_s * SAMPLE_RATE / hop))
        if self.window_frames <= 2 * self.context_frames:
            raise ValueError(f"window_s ({window_s}) must exceed twice context_s ({context_s})")
        self.batch_audio_s = batch_s or DEFAULT_BATCH_S[device_kind(backend.device)]  # audio seconds in flight, all lanes
        # The budget is shared by the lanes' batches in flight (and their memory).
        self.batch_samples = int(self.batch_audio_s * SAMPLE_RATE) // backend.lanes
        self.limits = limits or AudioLimits()
        self.vad = vad  # vad.VadSettings of segment mode (None: the defaults)
        self._model_lock = threading.Lock()

    @property
    def model_name(self) -> str:
        return self.backend.name

    @property
    def labels(self) -> list[str]:
        return list(self.backend.labels)

    @property
    def device(self) -> str:
        return str(self.backend.device)

    @property
    def random_weights(self) -> bool:
        """Whether the checkpoint was built with random weights (build-checkpoint, or an ONNX
        export of one): its emotions are meaningless, and its results say so."""
        return bool(getattr(self.backend, "random_weights", False))

    # -- public API ---------------------------------------------------------------------

    def predict(
        self,
        audio,
        granularity: str = "utterance",
        embedding: bool = False,
        *,
        sample_rate: int | None = None,
        name: str | None = None,
        progress: ProgressCallback | None = None,
        speakers=None,
        speaker_names: list[str] | None = None,
    ) -> EmotionResult:
        """The emotion of one input: a path, bytes, (array, rate), or a decoded `Audio`.

        granularity "utterance" gives one verdict; "frame" adds a 20 ms track; "segment"
        one verdict per speech segment, with `speakers` None, "channels", "auto" or a count
        (see conversation.py). With `embedding=True` the result carries the features:
        (D,), (T, D) or (segments, D).
        """
        speakers, speaker_names = check_options(granularity, embedding, speakers, speaker_names)
        decoded = self.decode(audio, sample_rate=sample_rate, name=name, keep_channels=speakers == "channels")
        return self.recognize([decoded], granularity, embedding, progress, speakers=speakers, speaker_names=speaker_names)[0]

    def predict_batch(
        self,
        items: Iterable,
        granularity: str = "utterance",
        embedding: bool = False,
        *,
        on_error: str = "raise",
        progress: ProgressCallback | None = None,
        speakers=None,
        speaker_names: list[str] | None = None,
    ) -> list[EmotionResult | Emotion2vecError]:
        """Results for many inputs, in input order.

        `on_error="raise"` raises the first input's error; "return" puts the error
        object in that input's place and goes on.
        """
        if on_error not in ("raise", "return"):
            raise ValueError('on_error must be "raise" or "return"')
        results = []
        recognitions = self.iter_recognitions(
            items, granularity, embedding, progress=progress, speakers=speakers, speaker_names=speaker_names
        )
        for rec in recognitions:
            if rec.error is not None and on_error == "raise":
                raise rec.error
            results.append(rec.error if rec.error is not None else rec.result)
        return results

    def iter_recognitions(
        self,
        items: Iterable,
        granularity: str = "utterance",
        embedding: bool = False,
        *,
        names: Iterable[str] | None = None,
        progress: ProgressCallback | None = None,
        speakers=None,
        speaker_names: list[str] | None = None,
    ) -> Iterator[Recognition]:
        """Decode and recognise `items` in chunks, yielding each in input order.

        The next chunk is decoded on a worker thread while the model runs; a bad input
        yields a Recognition with `error` set and the rest go on.
        """
        speakers, speaker_names = check_options(granularity, embedding, speakers, speaker_names)
        items = list(items)
        names = list(names) if names is not None else [_describe(item) for item in items]
        chunks = [range(i, min(i + DECODE_CHUNK, len(items))) for i in range(0, len(items), DECODE_CHUNK)]
        keep = speakers == "channels"
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="decode") as pool:
            pending = pool.submit(self._decode_chunk, items, names, chunks[0], keep) if chunks else None
            for number in range(len(chunks)):
                recognitions = pending.result()
                if number + 1 < len(chunks):
                    pending = pool.submit(self._decode_chunk, items, names, chunks[number + 1], keep)
                ok = [rec for rec in recognitions if rec.error is None]
                chunk_progress = _scaled(progress, number / len(chunks), 1 / len(chunks))
                results = self._recognize_each(ok, granularity, embedding, chunk_progress, speakers, speaker_names)
                for rec, result in zip(ok, results):
                    rec.result = result
                yield from recognitions

    def decode(
        self, audio, *, sample_rate: int | None = None, name: str | None = None, keep_channels: bool = False
    ) -> Audio:
        """Any accepted input -> `Audio` (16 kHz mono), within this recognizer's limits."""
        if isinstance(audio, Audio):
            return audio
        return load_audio(audio, sample_rate, name=name, limits=self.limits, keep_channels=keep_channels)

    def recognize(
        self,
        audios: list[Audio],
        granularity: str = "utterance",
        embedding: bool = False,
        progress: ProgressCallback | None = None,
        *,
        speakers=None,
        speaker_names: list[str] | None = None,
    ) -> list[EmotionResult]:
        """Results for decoded inputs, their windows run together in length-sorted batches."""
        check_granularity(granularity)
        if granularity == "segment":

            results = [recognize_segments(self, audio, speakers, speaker_names, embedding, vad=self.vad,
                                          progress=progress)
                       for audio in audios]
            for audio, result in zip(audios, results):
                result.warnings = clip_warnings(audio.waveform)
                result.random_weights = self.random_weights
            return results
        backend = self.backend
        tracks = []
        for audio in audios:
            windows = plan_windows(
                len(audio.waveform), backend.geometry.hop, backend.geometry.receptive_field,
                self.window_frames, self.context_frames,
            )
            tracks.append(_Track(audio, backend.input_normalization(audio.waveform), windows))
        jobs = sorted(
            ((t, w) for t in range(len(tracks)) for w in range(len(tracks[t].windows))),
            key=lambda job: _window_length(tracks, job),
        )
        total = sum(_window_length(tracks, job) for job in jobs) or 1  # windows overlap: more than the audio
        audio_s = sum(len(track.audio.waveform) for track in tracks) / SAMPLE_RATE  # what the progress counts
        done = 0
        with self._model_lock:
            for batch, encoded in self._encoded(list(self._batches(jobs, tracks)), tracks):
                for (t, w), features in zip(batch, encoded):
                    window = tracks[t].windows[w]
                    tracks[t].add(w, features[window.keep_from : window.keep_to], backend, granularity, embedding)
                done += sum(_window_length(tracks, job) for job in batch)
                if progress:
                    progress(done / total, f"{done / total * audio_s:.0f} / {audio_s:.0f} s of audio")
        return [self._finish(track, granularity, embedding) for track in tracks]

    def warm_up(self) -> None:
        """Run one short in-memory WAV through decoding and the model, so that the first
        real request does not pay for library initialisation and kernel selection."""
        buffer = io.BytesIO()
        sf.write(buffer, np.zeros(2 * SAMPLE_RATE, dtype=np.float32), SAMPLE_RATE, format="WAV")
        self.recognize([load_audio(buffer.getvalue(), name="warm-up")], granularity="frame")  # whatever the limits

    # -- internals ----------------------------------------------------------------------

    def _batches(self, jobs: list[tuple[int, int]], tracks: list[_Track]) -> Iterator[list[tuple[int, int]]]:
        """Group length-sorted jobs: a batch's padded size stays within the budget, and its
        shortest window is at least MIN_FILL of its longest, so padding wastes little."""
        batch: list[tuple[int, int]] = []
        for job in jobs:
            longest = _window_length(tracks, job)  # sorted ascending: the newest is the longest
            too_big = longest * (len(batch) + 1) > self.batch_samples
            if batch and (too_big or _window_length(tracks, batch[0]) < MIN_FILL * longest):
                yield batch
                batch = []
            batch.append(job)
        if batch:
            yield batch

    def _encoded(self, batches: list[list[tuple[int, int]]], tracks: list[_Track]) -> Iterator[tuple[list, list]]:
        """(batch, its windows' features) for every batch, in the order they finish.

        One batch runs here on every core; several run side by side in the backend's lanes,
        longest first (so the lanes finish together), at most one per lane at a time.
        """
        backend = self.backend

        def encode(batch: list[tuple[int, int]]) -> tuple[list, list]:
            return batch, backend.encode([tracks[t].window_input(w, backend) for t, w in batch])

        if backend.lanes == 1 or len(batches) == 1:
            yield from map(encode, batches)
            return
        queue = sorted(batches, key=lambda batch: len(batch) * _window_length(tracks, batch[-1]), reverse=True)
        running: set[Future] = set()
        try:
            for batch in queue:
                if len(running) == backend.lanes:
                    finished, running = wait(running, return_when=FIRST_COMPLETED)
                    yield from (future.result() for future in finished)
                running.add(backend.run_in_lane(encode, batch))
            while running:
                finished, running = wait(running, return_when=FIRST_COMPLETED)
                yield from (future.result() for future in finished)
        finally:
            wait(running)  # an error, or a caller that stopped early: the lanes' work ends here

    def _finish(self, track: _Track, granularity: str, embedding: bool) -> EmotionResult:
        """Turn a finished track into scores (and embeddings)."""
        num_frames = self.backend.geometry.num_frames(len(track.audio.waveform))
        mean_features = (track.feature_sum / num_frames).astype(np.float32)  # (D,)
        utterance_probs = _softmax(self.backend.logits(mean_features))
        frame_probs = _softmax(track.stitched(track.frame_logits)) if granularity == "frame" else None
        vector = None
        if embedding:
            vector = track.stitched(track.frame_features) if granularity == "frame" else mean_features
        result = build_result(
            utterance_probs, self.labels, granularity, track.audio.duration_s, self.model_name,
            source=track.audio.name, embedding=vector, frame_probs=frame_probs,
        )
        result.warnings = clip_warnings(track.audio.waveform)
        result.random_weights = self.random_weights
        return result

    def _recognize_each(self, recs, granularity, embedding, progress, speakers, speaker_names) -> list:
        """`recognize` on the decoded inputs of `recs`; a segment-mode error stays with its input."""
        if granularity != "segment":
            return self.recognize([r.audio for r in recs], granularity, embedding, progress)
        results = []
        for number, rec in enumerate(recs):
            try:
                own_progress = _scaled(progress, number / len(recs), 1 / len(recs))
                results.append(self.recognize([rec.audio], granularity, embedding, own_progress,
                                              speakers=speakers, speaker_names=speaker_names)[0])
            except Emotion2vecError as e:
                rec.error = e
                results.append(None)
        return results

    def _decode_chunk(self, items: list, names: list[str], indices: range, keep_channels: bool = False) -> list[Recognition]:
        recognitions = []
        for i in indices:
            rec = Recognition(index=i, name=names[i])
            try:
                rec.audio = self.decode(items[i], name=names[i], keep_channels=keep_channels)
            except Emotion2vecError as e:
                rec.error = e
            recognitions.append(rec)
        return recognitions


def _window_length(tracks: list[_Track], job: tuple[int, int]) -> int:
    window = tracks[job[0]].windows[job[1]]
    return window.stop - window.start


def _softmax(logits: np.ndarray) -> np.ndarray:
    """Softmax over the last axis, computed in float64 so the scores sum to 1."""
    shifted = logits.astype(np.float64) - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


def _scaled(progress: ProgressCallback | None, offset: float, span: float) -> ProgressCallback | None:
    if progress is None:
        return None
    return lambda fraction, text: progress(offset + span * fraction, text)


def _describe(item) -> str:
    if isinstance(item, (str, os.PathLike)):
        return str(item)
    if isinstance(item, Audio):
        return item.name
    return type(item).__name__


def load_model(
    model: str | os.PathLike | None = None,
    hub: str | None = None,
    device: str | None = None,
    *,
    precision: str = "fp32",
    window_s: float = DEFAULT_WINDOW_S,
    context_s: float = DEFAULT_CONTEXT_S,
    batch_s: float | None = None,
    limits: AudioLimits | None = None,
    warm_up: bool = True,
    backend: str = "torch",
    vad=None,
    lanes: int | None = None,
) -> Recognizer:
    """Load emotion2vec+ (default: large from ModelScope) once and return a Recognizer.

    `model` is a hub id or a local checkpoint folder (default "iic/emotion2vec_plus_large");
    `hub` "ms" (ModelScope, default) or "hf"; `device` "cpu", "cuda", "cuda:1", ...
    (default CUDA when available). `precision` "fp32" (default, exact), "bf16" or "fp16"
    (autocast matmuls), "int8" (CPU: quantised transformer linears). `limits` bounds each
    input's file size and duration (default: `AudioLimits()`, 1 GiB and 3 hours). `vad`
    (vad.VadSettings) tunes segment mode's speech detection. `lanes`: batches run side by
    side on the CPU, each on its share of the cores (default 2 where there are 2 cores or
    more: faster for many inputs or long ones; a single batch still uses every core; 1 with
    backend="onnx", whose lanes hold more copies of the weights: one more on 2 cores).
    `batch_s`: padded audio seconds in flight at once, shared by the lanes (default 60 on
    the CPU, 480 on a GPU).
    `warm_up` runs a 2 s dummy input once so the first request is as fast as later ones.
    `backend="onnx"`: `model` is a folder written by `export-onnx`, run on ONNX Runtime
    without torch or funasr (its precision was chosen at export). Nothing is read from
    the environment.
    """

    check_window(window_s)  # before the (slow) load
    if backend not in BACKENDS:
        raise ModelLoadError(f"unknown backend {backend!r}; use one of {', '.join(BACKENDS)}.")
    if device is not None:
        try:
            check_device(device)
        except ValueError as e:
            raise ModelLoadError(f"device {device!r}: {e}.") from None
    if backend == "onnx" and precision != "fp32":
        raise ModelLoadError(f"precision {precision!r} does not apply to the onnx backend: an exported folder "
                             "runs the precision it was exported with (export-onnx --int8 for int8).")
    if backend == "onnx":

        engine = load_onnx_backend(model, device, lanes)
    else:
        from .torch_backend import load_backend  # heavy: imports torch and funasr

        engine = load_backend(model, hub, device, precision, lanes)
    recognizer = Recognizer(engine, window_s=window_s, context_s=context_s, batch_s=batch_s, limits=limits,
                            vad=vad)
    if warm_up:
        recognizer.warm_up()
    return recognizer
