"""One recognition of an upload, for the page's button and REST `/predict`.

`recognize_file` is the whole recognition of one upload (decode, recognise, save the
output folder, write the processing log). `Handlers` holds the page's and the API's event
functions: they run without a server, so tests call them directly.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..audio.decode import SAMPLE_RATE, Audio
from ..engine.recognizer import ProgressCallback
from ..errors import AudioError, Emotion2vecError
from ..outputs.folders import (
    AUDIO_FILE,
    EMBEDDING_FILE,
    RESULT_FILE,
    check_free_space,
    folder_bytes,
    save_recognition,
)
from ..outputs.subtitles import CSV_FILE, SRT_FILE, VTT_FILE
from ..results import EmotionResult, counted
from ..settings import Settings
from .conversation import (
    DEFAULT_SPEAKERS,
    check_channel_names,
    conversation_outputs,
)
from .requests import RequestError, UserFacingError, check_request, input_name
from .views import (
    emotion_track,
    headline_html,
    page_json,
    score_bars_html,
    segment_min_s,
    segment_table,
    track_legend_html,
)

log = logging.getLogger(__name__)


@dataclass
class PageRecognition:
    """One finished recognition: what the page and the API return.

    `data` is the content of the folder's result.json plus `output_folder` (the folder's
    name, never a server path); `log` holds the processing steps, one line each.
    """

    result: EmotionResult
    audio: Audio
    folder: Path
    data: dict
    log: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # warnings about the clip: too short, silent

    @property
    def files(self) -> list[Path]:
        """The folder's downloads: result.json, processed_audio.wav, embedding.npy when asked,
        and segments.csv/.srt/.vtt in segment mode."""
        names = [RESULT_FILE, AUDIO_FILE] + ([EMBEDDING_FILE] if self.result.embedding is not None else [])
        if self.result.granularity == "segment":
            names += [CSV_FILE, SRT_FILE, VTT_FILE]
        return [self.folder / name for name in names]


def recognize_file(
    model,
    path: str | Path,
    granularity: str = "utterance",
    embedding: bool = False,
    output_root: str | Path = "outputs",
    progress: ProgressCallback | None = None,
    name: str | None = None,
    min_free_bytes: int = 0,
    speakers=None,
    speaker_names: list[str] | None = None,
) -> PageRecognition:
    """Decode, recognise and save one audio file, logging each step.

    `name` is how messages call the file (default: the path's file name, which for an
    upload is the user's own file name); `speakers` and `speaker_names` are segment
    mode's, as `predict` takes them. Raises the engine's `Emotion2vecError`s (whose
    messages start with `name`), `OutputWriteError` when the disk is nearly full
    (under `min_free_bytes` free) or the folder cannot be written, and RequestError when
    the speaker names do not fit the file's channels.
    """
    name = name or Path(path).name
    step = progress or (lambda fraction, text: None)
    check_free_space(output_root, min_free_bytes)
    step(0.0, "校验与解码 Validating and decoding")
    started = time.perf_counter()
    by_channel = granularity == "segment" and speakers == "channels"
    audio = model.decode(path, name=name, keep_channels=by_channel)
    if by_channel and audio.channels is not None:
        try:
            check_channel_names(speaker_names, len(audio.channels), name)
        except ValueError as e:
            raise RequestError(str(e)) from e
    decode_s = time.perf_counter() - started
    log_lines = [
        f"[1/4] 校验 Validation: {name} ✓ ({audio.source_format}, {audio.source_channels} ch, "
        f"{audio.source_rate} Hz, {audio.duration_s:.2f} s; decoded in {decode_s:.2f} s)",
        f"[2/4] 重采样 Resampling: {audio.source_rate} Hz {audio.source_channels} ch → "
        f"{SAMPLE_RATE} Hz mono, {audio.duration_s:.2f} s ({len(audio.waveform)} samples)",
    ]
    started = time.perf_counter()
    result = model.recognize(
        [audio], granularity, embedding,
        lambda fraction, text: step(0.05 + 0.9 * fraction, f"推理 Inference: {text}"),
        speakers=speakers, speaker_names=speaker_names,
    )[0]
    infer_s = time.perf_counter() - started
    notes = result.warnings  # short or nearly silent clip
    log_lines += [f"注意 Note: {note}" for note in notes]
    frames = f", {counted(len(result.frame_scores), 'frame')}" if result.frame_scores is not None else ""
    if granularity == "segment":
        frames = f", {counted(len(result.segments), 'segment')}, {counted(len(result.speakers), 'speaker')}"
    shape = f", embedding {tuple(result.embedding.shape)}" if result.embedding is not None else ""
    log_lines.append(
        f"[3/4] 推理 Inference: {granularity} on {model.device} in {infer_s:.2f} s "
        f"({audio.duration_s / max(infer_s, 1e-6):.0f}× real time{frames}{shape})"
    )
    step(0.97, "保存 Saving")
    folder = save_recognition(result, audio, output_root)
    data = json.loads((folder / RESULT_FILE).read_text(encoding="utf-8"))
    data["output_folder"] = folder.name
    page = PageRecognition(result, audio, folder, data, log_lines, notes)
    saved = ", ".join(f.name for f in page.files)
    log_lines.append(f"[4/4] 保存 Saving: {folder.name}/ ({saved}; {folder_bytes(folder) / 2**20:.2f} MB written)")
    log_lines.append(f"结果 Result: {result.display} {result.confidence:.1%}")
    return page



# -- the page's and the API's event handlers -----------------------------------------------


class Handlers:
    """The event functions of one server: recognition for the page and for the API.

    `serve` turns output files into copies the web server may hand out (see
    `build_demo`); it defaults to the files themselves, for tests without a server.
    """

    def __init__(self, model, settings: Settings, serve: Callable[[list[Path]], list[str]] | None = None):
        self.model = model
        self.settings = settings
        self.serve = serve or (lambda files: [str(f) for f in files])

    def run(self, audio, granularity, embedding, progress: ProgressCallback | None = None,
            speakers=DEFAULT_SPEAKERS, speaker_names="", *, api: bool = False) -> PageRecognition:
        """One checked, logged recognition; user mistakes raise RequestError or Emotion2vecError.
        An `api` call may set speaker options only for segment mode; the page's hidden speaker
        inputs keep their values while another granularity is chosen, so they are left out."""
        if not api and granularity != "segment":
            speakers, speaker_names = DEFAULT_SPEAKERS, ""
        path, granularity, embedding, speakers, names = check_request(
            audio, granularity, embedding, speakers, speaker_names)
        started = time.perf_counter()
        page = recognize_file(
            self.model, path, granularity, embedding, self.settings.output_dir, progress,
            min_free_bytes=int(self.settings.min_free_disk_mb * 2**20),
            speakers=speakers, speaker_names=names,
        )
        log.info(
            "recognised %s (%.1f s of audio, %s%s) in %.2f s -> %s", page.audio.name, page.audio.duration_s,
            granularity, ", embedding" if embedding else "", time.perf_counter() - started, page.folder.name,
        )
        return page

    def api_predict(self, audio, granularity="utterance", embedding=False, speakers=DEFAULT_SPEAKERS,
                    speaker_names="", progress=None):
        """REST /predict: (result JSON, download links); errors as plain text."""
        page = self._guarded(audio, granularity, embedding, progress, speakers, speaker_names, api=True)
        return page.data, self.serve(page.files)

    def page_recognize(self, audio, granularity, embedding, speakers=DEFAULT_SPEAKERS, speaker_names="",
                       progress=None):
        """The page's button: everything the result column shows."""
        page = self._guarded(audio, granularity, embedding, progress, speakers, speaker_names)
        result = page.result
        frame_mode = result.frame_scores is not None
        track, legend = None, ""
        if frame_mode:
            track, step_s, window_s = emotion_track(result)
            legend = track_legend_html(result.labels, step_s, window_s, segment_min_s(result.duration_s))
        return (
            headline_html(result, page.notes),
            score_bars_html(result),
            "\n".join(page.log),
            frame_mode,
            track,
            legend,
            segment_table(result) if frame_mode else None,
            page_json(page.data),
            self.serve(page.files),
            *conversation_outputs(result),
        )

    def _guarded(self, audio, granularity, embedding, progress, speakers, speaker_names,
                 api: bool = False) -> PageRecognition:
        """`run`, with every failure turned into a UserFacingError; bugs are logged with a traceback."""
        try:
            return self.run(audio, granularity, embedding, progress, speakers, speaker_names, api=api)
        except RequestError as e:
            log.warning("refused %s: %s", input_name(audio), e)
            raise UserFacingError(str(e), "请求无效 Invalid request") from e
        except Emotion2vecError as e:
            log.warning("refused: %s", e)  # the message names the input
            unusable = isinstance(e, AudioError)
            title = "无法使用这段音频 Cannot use this audio" if unusable else "无法保存结果 Cannot save the result"
            raise UserFacingError(str(e), title) from e
        except Exception as e:
            log.exception("recognition of %s failed", input_name(audio))
            raise UserFacingError(
                "The server failed on this request (a bug, logged on the server); please try again or report it.",
                "内部错误 Internal error",
            ) from e
