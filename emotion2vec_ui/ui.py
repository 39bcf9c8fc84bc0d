"""The web page and its REST API: request checks and handlers as plain functions, then the Gradio app.

    model = load_model(...)          # loads and warms up
    demo = build_demo(model, settings)
    launch(demo, settings)

`recognize_file` is the whole recognition of one upload (decode, recognise, save the
output folder, write the processing log). `check_request` turns a call's raw values into
checked ones or a `RequestError` that says what is wrong. `Handlers` holds the page's
and the API's event functions: they run without a server, so tests call them directly.
`build_demo` lays out the page (an input column and a result column) and wires the
events; the page's button and the REST API (`api_name="predict"`) share one model slot.

Privacy: the output folders are never served. A user's downloads are copies put under
an unguessable name in Gradio's cache, which forgets them (and uploads) after
`cache_minutes`.
"""

from __future__ import annotations

import html
import json
import logging
import secrets
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .audio import RECOMMENDED_S, SAMPLE_RATE, Audio
from .errors import AudioError, Emotion2vecError
from .formats import ACCEPTED_FORMATS
from .outputs import (
    AUDIO_FILE,
    EMBEDDING_FILE,
    RESULT_FILE,
    check_free_space,
    folder_bytes,
    save_recognition,
)
from .pipeline import ProgressCallback
from .results import EmotionResult, label_for
from .settings import Settings
from .subtitles import CSV_FILE, SRT_FILE, VTT_FILE
from .turns import TakingTurns
from .ui_conversation import (
    CONVERSATION_CSS,
    DEFAULT_SPEAKERS,
    check_channel_names,
    conversation_outputs,
    conversation_views,
    parse_speaker_names,
    parse_speakers,
    show_speaker_inputs,
    speaker_inputs,
)
from .ui_upload import upload_script
from .ui_views import (
    EMOTION_COLORS,
    GRANULARITIES,
    emotion_name,
    emotion_track,
    headline_html,
    page_json,
    score_bars_html,
    segment_min_s,
    segment_table,
    track_legend_html,
)

log = logging.getLogger(__name__)

EXAMPLE_AUDIO = Path(__file__).parent / "assets" / "example_zh.wav"
RECOMMENDED_DURATION = f"{RECOMMENDED_S[0]:g}–{RECOMMENDED_S[1]:g} s"
AUDIO_ELEMENT_ID = "e2v-audio"
MODEL_CONCURRENCY_ID = "model"  # every event that runs the model shares this one slot
API_INPUTS = ("audio", "granularity", "embedding", "speakers", "speaker_names")
API_DEFAULTS = (DEFAULT_SPEAKERS, "")  # what calls that stop after the first three inputs get for the last two
API_REQUIRED = len(API_INPUTS) - len(API_DEFAULTS)
API_EXAMPLE = 'client.predict(handle_file("a.wav"), "utterance", False, api_name="/predict")'
LOGIN_DELAY_S = 1.0  # extra wait per recent failed login ...
LOGIN_MAX_DELAY_S = 10.0  # ... up to this
LOGIN_MEMORY_S = 600.0  # failures older than this are forgotten


# -- recognition --------------------------------------------------------------------------


class RequestError(ValueError):
    """A call whose values cannot be used; the message says which and how to call instead."""


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
    frames = f", {len(result.frame_scores)} frames" if result.frame_scores is not None else ""
    if granularity == "segment":
        frames = f", {len(result.segments)} segments, {len(result.speakers)} speakers"
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


def check_request(audio, granularity, embedding, speakers=DEFAULT_SPEAKERS, speaker_names="") -> tuple:
    """The checked (audio path, granularity, embedding, speakers, speaker names) of a call,
    or RequestError.

    `audio` is what Gradio's Audio component hands over: a path in its upload folder.
    `embedding` must be a real boolean: "false", "no", 5 or [1] are refused rather than
    guessed at. `speakers` ("one", "channels", "auto" or a count) and `speaker_names`
    ("agent, customer") become `predict`'s; other granularities ignore them.
    """
    speakers, names = check_options(granularity, embedding, speakers, speaker_names)
    if audio is None or audio == "":
        raise RequestError("No audio: upload or record an audio clip first (请先上传或录制一段音频).")
    if not isinstance(audio, str):
        raise RequestError(f"audio must be an uploaded file, not a {type(audio).__name__}. Call: {API_EXAMPLE}")
    return audio, granularity, embedding, speakers, names


def check_options(granularity, embedding, speakers=DEFAULT_SPEAKERS, speaker_names="") -> tuple:
    """RequestError unless granularity is a known one, embedding a real boolean and the
    speaker options usable; returns (speakers, speaker names) as `predict` takes them."""
    if granularity not in GRANULARITIES:
        raise RequestError(f"granularity must be one of {', '.join(GRANULARITIES)}, not {granularity!r}.")
    if not isinstance(embedding, bool):
        raise RequestError(f"embedding must be true or false (a JSON boolean), not {embedding!r}.")
    try:
        speakers = parse_speakers(speakers)
        return speakers, parse_speaker_names(speaker_names, speakers)
    except ValueError as e:
        raise RequestError(str(e)) from e


def check_segment_only(granularity: str, speakers, speaker_names) -> None:
    """RequestError when checked speaker options (`speakers` None for one speaker, names a
    list or None) are set for another granularity than segment."""
    if granularity != "segment" and (speakers is not None or speaker_names):
        raise RequestError(f'speakers and speaker_names apply to granularity "segment" only, not to {granularity!r}. '
                           'Send "one" and "" (or leave them out).')


def malformed_call_message(inputs: list, error: Exception) -> str:
    """What is wrong with a call that Gradio could not even hand to a handler.

    `inputs` are the call's raw values; `error` what Gradio raised preparing them.
    """
    if len(inputs) < API_REQUIRED:
        return (f"predict takes {API_REQUIRED} to {len(API_INPUTS)} inputs ({', '.join(API_INPUTS)}); this call "
                f"sent {len(inputs)}. Call: {API_EXAMPLE}")
    audio, granularity, embedding, speakers, speaker_names = api_values(inputs)[: len(API_INPUTS)]
    try:
        check_options(granularity, embedding, speakers, speaker_names)
    except RequestError as e:
        return str(e)
    upload_hint = ("Upload the file first (gradio_client's handle_file, or POST /gradio_api/upload) and pass "
                   '{"path": <the returned path>, "meta": {"_type": "gradio.FileData"}}.')
    if isinstance(audio, dict) and isinstance(audio.get("path"), str) and audio["path"]:
        path = audio["path"]
        if path.startswith(("http://", "https://")):
            return f"audio: URLs are not fetched by this server. {upload_hint}"
        return f"audio: {Path(path).name} was not uploaded to this server, so it cannot be read. {upload_hint}"
    if isinstance(audio, str) and audio:
        return (f"audio: {Path(audio).name} was sent as a path, and this server reads only files uploaded to it. "
                f"{upload_hint}")
    if audio is not None:
        shown = json.dumps(audio)
        return f"audio must be an uploaded file, not {shown if len(shown) <= 80 else shown[:77] + '...'}. {upload_hint}"
    return f"The call's values cannot be used ({str(error).splitlines()[0][:200]}). Call: {API_EXAMPLE}"


def api_values(inputs: list) -> list:
    """A /predict call's values: the optional inputs it left out get their defaults, and
    speaker names sent as a list of strings are joined ("agent, customer")."""
    missing = len(API_INPUTS) - len(inputs)
    values = [*inputs, *API_DEFAULTS[len(API_DEFAULTS) - missing :]] if 0 < missing <= len(API_DEFAULTS) else list(inputs)
    names = values[API_INPUTS.index("speaker_names")] if len(values) == len(API_INPUTS) else None
    if isinstance(names, list) and all(isinstance(name, str) for name in names):
        values[API_INPUTS.index("speaker_names")] = ", ".join(names)
    return values


class LoginGuard:
    """The server's login check: a wrong password costs a growing wait (LOGIN_DELAY_S per
    failure in the last LOGIN_MEMORY_S, at most LOGIN_MAX_DELAY_S), slowing a guesser down."""

    def __init__(self, user: str, password: str, clock: Callable[[], float] = time.monotonic):
        self.user, self.password, self.clock = user, password, clock
        self.failures: list[float] = []

    def delay_s(self) -> float:
        """The wait the next failed login costs."""
        now = self.clock()
        self.failures = [t for t in self.failures if now - t < LOGIN_MEMORY_S]
        return min(LOGIN_DELAY_S * (len(self.failures) + 1), LOGIN_MAX_DELAY_S)

    async def check(self, user: str, password: str) -> bool:
        """Gradio's `auth` callable (a coroutine function, so the wait blocks nobody else)."""
        import asyncio

        if secrets.compare_digest(user.encode(), self.user.encode()) and secrets.compare_digest(
            password.encode(), self.password.encode()
        ):
            return True
        delay = self.delay_s()
        self.failures.append(self.clock())
        log.warning("failed login for user %r; answering in %.0f s", user, delay)
        await asyncio.sleep(delay)
        return False


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
        An `api` call may set speaker options only for segment mode (the page's hidden speaker
        inputs keep their values while another granularity is chosen)."""
        path, granularity, embedding, speakers, names = check_request(
            audio, granularity, embedding, speakers, speaker_names)
        if api:
            check_segment_only(granularity, speakers, names)
        started = time.perf_counter()
        page = recognize_file(
            self.model, path, granularity, embedding, self.settings.output_dir, progress,
            min_free_bytes=int(self.settings.min_free_disk_mb * 2**20),
            **({"speakers": speakers, "speaker_names": names} if granularity == "segment" else {}),
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
            log.warning("refused %s: %s", _input_name(audio), e)
            raise UserFacingError(str(e), "请求无效 Invalid request") from e
        except Emotion2vecError as e:
            log.warning("refused: %s", e)  # the message names the input
            unusable = isinstance(e, AudioError)
            title = "无法使用这段音频 Cannot use this audio" if unusable else "无法保存结果 Cannot save the result"
            raise UserFacingError(str(e), title) from e
        except Exception as e:
            log.exception("recognition of %s failed", _input_name(audio))
            raise UserFacingError(
                "The server failed on this request (a bug, logged on the server); please try again or report it.",
                "内部错误 Internal error",
            ) from e


class UserFacingError(Exception):
    """A message for the person or program that made the call (plain text) and its title."""

    def __init__(self, message: str, title: str):
        super().__init__(message)
        self.message, self.title = message, title


def _input_name(audio) -> str:
    return Path(audio).name if isinstance(audio, str) and audio else "a call without audio"


# -- the Gradio app -----------------------------------------------------------------------

CSS = """
.e2v-card { display: flex; gap: 18px; align-items: center; padding: 14px 18px; border-radius: 12px;
  border: 1px solid var(--border-color-primary); border-left: 8px solid var(--e2v-color, #888);
  background: var(--background-fill-secondary); }
.e2v-empty { display: block; color: var(--body-text-color-subdued); border-left-color: var(--border-color-primary); }
.e2v-emoji { font-size: 56px; line-height: 1; }
.e2v-text { flex: 1; min-width: 0; }
.e2v-main { font-size: 26px; font-weight: 700; }
.e2v-conf { font-size: 18px; font-weight: 600; margin-left: 10px; color: var(--body-text-color-subdued); }
.e2v-bar { height: 8px; border-radius: 4px; background: var(--border-color-primary); margin: 8px 0 6px; }
.e2v-bar span { display: block; height: 100%; border-radius: 4px; background: var(--e2v-color, #888); }
.e2v-meta { font-size: 13px; color: var(--body-text-color-subdued); overflow-wrap: anywhere; }
.e2v-header h1 { margin-bottom: 4px; }
.e2v-legend { display: flex; flex-wrap: wrap; gap: 4px 14px; font-size: 13px; margin-bottom: 4px; }
.e2v-key i { display: inline-block; width: 14px; height: 4px; border-radius: 2px; margin-right: 5px; vertical-align: middle; }
#e2v-log textarea { font-family: var(--font-mono); font-size: 13px; }
.e2v-error { border-left-color: #d62828; }
.e2v-note { font-size: 13px; margin-top: 4px; color: #b45309; }
.e2v-scores-box { padding: 10px 14px; border-radius: 12px; border: 1px solid var(--border-color-primary); }
.e2v-scores-title { font-weight: 600; margin-bottom: 6px; }
.e2v-score { display: grid; grid-template-columns: 11em 1fr 4.2em; gap: 10px; align-items: center; font-size: 14px; }
.e2v-score-bar { height: 12px; border-radius: 6px; background: var(--border-color-primary); overflow: hidden; }
.e2v-score-bar i { display: block; height: 100%; }
.e2v-score-value { text-align: right; font-variant-numeric: tabular-nums; }
.e2v-top { font-weight: 700; }
#e2v-files .label-clear-button { display: none; }  /* downloads are output only: nothing to remove */
""" + CONVERSATION_CSS
EMOJI_FONTS = ["Noto Color Emoji", "Apple Color Emoji", "Segoe UI Emoji"]
FONTS = ["Noto Sans CJK SC", "PingFang SC", "Microsoft YaHei", *EMOJI_FONTS, "system-ui", "sans-serif"]
MONO_FONTS = ["Noto Sans Mono CJK SC", "ui-monospace", "Consolas", "monospace"]


def theme():
    """The page theme, on local fonts only (no web font downloads; CJK first)."""
    import gradio as gr

    return gr.themes.Soft(primary_hue="indigo", font=FONTS, font_mono=MONO_FONTS)


def build_demo(model, settings: Settings):
    """The page for a loaded `model` (a Recognizer) served with `settings`: a gr.Blocks with
    its queue configured.

    Recognitions run one at a time (one model, one device), at most `settings.queue_size`
    wait, and the direct REST route that would skip the queue is closed. Uploads and
    served downloads are deleted from Gradio's cache after `settings.cache_minutes`.
    """
    import gradio as gr

    from .ui_batch import batch_tab  # imports this module

    cache_age_s = max(1, round(settings.cache_minutes * 60))
    blocks_class = _checked_blocks_class()
    with blocks_class(
        title="emotion2vec+ 语音情感识别 Speech Emotion Recognition",
        delete_cache=(max(1, min(cache_age_s // 4, 300)), cache_age_s),
    ) as demo:
        model = TakingTurns(model)  # the page, its batches and the API take turns on the model (turns.py)
        handlers = Handlers(model, settings, serve=lambda files: serve_copies(demo, files))

        def predict(audio, granularity="utterance", embedding=False, speakers=DEFAULT_SPEAKERS, speaker_names=None,
                    progress=gr.Progress()):
            """Recognise the emotion in one uploaded audio file.

            granularity: "utterance" (one emotion for the clip), "frame" (adds a 20 ms track) or
            "segment" (an emotion per speech segment, with speakers); embedding: also save
            embedding.npy; speakers (segment only): "one", "channels" (one per channel of a
            stereo file), "auto" or a count such as "2"; speaker_names: "agent, customer".
            Returns the result JSON (result.json's content plus `output_folder`, the saved
            folder's name) and the output files: result.json, processed_audio.wav, embedding.npy
            when asked, and segments.csv/.srt/.vtt in segment mode.
            """
            try:
                return handlers.api_predict(audio, granularity, embedding, speakers, speaker_names,
                                            _reporter(progress))
            except UserFacingError as e:
                raise gr.Error(e.message, title=e.title, duration=20, print_exception=False) from None

        def recognize_page(audio, granularity, embedding, speakers, speaker_names, progress=gr.Progress()):
            """The page's recognition; a refused input shows in the headline, the log and a toast."""
            try:
                shown = handlers.page_recognize(audio, granularity, embedding, speakers, speaker_names,
                                                _reporter(progress))
            except UserFacingError as e:
                gr.Warning(html.escape(e.message, quote=False), duration=20, title=e.title)
                return _error_outputs(e)
            return (*shown[:3], gr.update(visible=shown[3]), *shown[4:9], gr.update(visible=shown[9]), *shown[10:])

        gr.Markdown(_header_markdown(model), elem_classes="e2v-header")
        with gr.Tabs(elem_id="e2v-tabs"):
            with gr.Tab("单个识别 Single", id="single", elem_id="e2v-tab-single"):
                with gr.Row(equal_height=False):
                    (audio_input, granularity_input, embedding_input, run_button, example_button,
                     speaker_options) = _input_column()
                    page_outputs = _result_column(model)
                with gr.Accordion("说明 Notes", open=False):
                    gr.Markdown(
                        "- 每次识别都会在服务器的输出目录中保存一个 `outputs_YYYYMMDD_HHMMSS` 文件夹 · every recognition "
                        "is saved as an `outputs_YYYYMMDD_HHMMSS` folder on the server; your downloads are private "
                        f"copies, kept {settings.cache_minutes:g} min.\n"
                        "- 识别请求排队依次处理 · requests are queued and run one at a time.\n"
                        "- 也可以通过 REST API 调用 (页面底部 “Use via API”) · the recognition is also a REST API, "
                        "`/predict` (see “Use via API” at the bottom of the page)."
                    )
            with gr.Tab("批量处理 Batch", id="batch", elem_id="e2v-tab-batch"):
                batch_tab(model, settings, serve=lambda files: serve_copies(demo, files))
        show_speaker_inputs(granularity_input, speaker_options[0])
        inputs = [audio_input, granularity_input, embedding_input, *speaker_options[1:]]
        run_button.click(
            recognize_page, inputs=inputs, outputs=page_outputs, api_visibility="private",
            concurrency_limit=1, concurrency_id=MODEL_CONCURRENCY_ID, show_progress_on=[page_outputs[0]],
        )
        # The REST API: the same recognition, returning only the result JSON and the files.
        api_trigger = gr.Button(visible=False)
        api_speakers = gr.Textbox(DEFAULT_SPEAKERS, visible=False)  # text, so any count is accepted
        api_trigger.click(
            predict, inputs=[*inputs[:3], api_speakers, inputs[4]], outputs=[page_outputs[7], page_outputs[8]],
            api_name="predict",
            concurrency_limit=1, concurrency_id=MODEL_CONCURRENCY_ID,
        )
        example_button.click(
            lambda: str(EXAMPLE_AUDIO), outputs=[audio_input], api_visibility="private", concurrency_limit=None,
        )
        # A new file (or none) clears the previous file's result, so it is never read as this one's.
        audio_input.change(_cleared_outputs, outputs=page_outputs, api_visibility="private", queue=False)
    demo.queue(max_size=settings.queue_size, api_open=False, default_concurrency_limit=1)
    return demo


def _header_markdown(model) -> str:
    legend = " · ".join(label_for(key).display for key in model.labels)
    return (
        "# 🎭 emotion2vec+ 语音情感识别 · Speech Emotion Recognition\n"
        f"模型 Model: **{model.model_name}** · 设备 Device: **{model.device}** · "
        f"{len(model.labels)} 类情感 {len(model.labels)} emotions: {legend}"
    )


def _input_column():
    """The left column: audio, options and buttons."""
    import gradio as gr

    with gr.Column(scale=1, min_width=340):
        audio_input = gr.Audio(
            sources=["upload", "microphone"], type="filepath", elem_id=AUDIO_ELEMENT_ID, label="音频输入 Audio input",
            buttons=["download"],
        )
        gr.Markdown(
            "点击上传、拖放文件或用麦克风录音 · click to upload, drop a file, or record with the microphone.  \n"
            f"支持格式 Formats: **{ACCEPTED_FORMATS}** · 推荐时长 Recommended: **{RECOMMENDED_DURATION}**"
            "（更长的音频也可以 · longer audio works too）"
        )
        granularity_input = gr.Radio(
            [(label, value) for value, (label, _) in GRANULARITIES.items()],
            value="utterance", label="识别粒度 Granularity", elem_id="e2v-granularity",
        )
        gr.Markdown(
            "\n".join(f"- **{label}**: {text}" for label, text in GRANULARITIES.values()), elem_classes="e2v-help",
        )
        speaker_options = speaker_inputs()
        embedding_input = gr.Checkbox(
            label="提取 Embedding 特征", value=False, elem_id="e2v-embedding",
            info="另存 embedding.npy · also save the features (utterance: (D,), frame: (T, D), segment: (S, D))",
        )
        run_button = gr.Button("🎯 开始识别", variant="primary", size="lg", elem_id="e2v-run")
        example_button = gr.Button("加载示例音频 Load the example", variant="secondary", elem_id="e2v-example")
    return audio_input, granularity_input, embedding_input, run_button, example_button, speaker_options


def _result_column(model) -> list:
    """The right column; returns its outputs in the order `Handlers.page_recognize` fills them."""
    import gradio as gr

    color_map = {emotion_name(key): EMOTION_COLORS.get(key, "#888888") for key in model.labels}
    with gr.Column(scale=1, min_width=400):
        headline = gr.HTML(headline_html(None), elem_id="e2v-headline")
        conversation = conversation_views()
        score_bars = gr.HTML(elem_id="e2v-scores")
        with gr.Column(visible=False, elem_id="e2v-frame-views") as frame_views:
            track_plot = gr.LinePlot(
                x="time_s", y="score", color="emotion", color_map=color_map, colors_in_legend=[], y_lim=[0, 100],
                x_title="时间 Time (s)", y_title="概率 Probability (%)", color_title="情绪 Emotion",
                label="情绪随时间变化 Emotion over time", show_label=True, elem_id="e2v-track",
            )
            track_legend = gr.HTML(elem_id="e2v-track-legend")
            segments = gr.Dataframe(
                label="分段主导情绪 Dominant emotion per segment", interactive=False,
                max_height=320, elem_id="e2v-segments", wrap=True,
            )
        log_box = gr.Textbox(
            label="处理日志 Processing log", lines=6, max_lines=12, interactive=False,
            elem_id="e2v-log", buttons=["copy"],
        )
        result_json = gr.JSON(label="结果 JSON Result", elem_id="e2v-json", max_height=360)
        files_output = gr.File(
            label="下载 Downloads",
            file_count="multiple", interactive=False, elem_id="e2v-files",
        )
    return [headline, score_bars, log_box, frame_views, track_plot, track_legend, segments, result_json, files_output,
            *conversation]


def _error_outputs(error: UserFacingError) -> tuple:
    """The result column after a refused input: the message in the headline and the log, the rest cleared."""
    import gradio as gr

    card = (
        '<div class="e2v-card e2v-error">'
        f"<div><b>{html.escape(error.title)}</b><br>{html.escape(error.message, quote=False)}</div></div>"
    )
    return (card, "", f"错误 Error: {error.message}", gr.update(visible=False), None, "", None, None, None,
            *_no_conversation())


def _cleared_outputs() -> tuple:
    """The result column before any result: the waiting card, everything else empty."""
    import gradio as gr

    return (headline_html(None), "", "", gr.update(visible=False), None, "", None, None, None, *_no_conversation())


def _no_conversation() -> tuple:
    """The conversation views hidden and empty (visibility, summary, timeline, table)."""
    import gradio as gr

    return (gr.update(visible=False), "", "", None)


def _reporter(progress) -> ProgressCallback:
    return lambda fraction, text: progress(fraction, desc=text)


def serve_copies(demo, files: list[Path]) -> list[str]:
    """Copies of `files` for one user, under an unguessable folder in Gradio's cache.

    The cache forgets them on the `delete_cache` schedule; the output folder itself is
    never served.
    """
    folder = Path(demo.GRADIO_CACHE) / secrets.token_hex(16)
    folder.mkdir(parents=True)
    served = []
    for file in files:
        target = folder / file.name
        shutil.copyfile(file, target)
        demo.upload_file_set.add(str(target))  # deleted with the uploads, on the cache schedule
        served.append(str(target))
    return served


def _checked_blocks_class():
    """gr.Blocks whose calls with unusable values (missing, not an uploaded file, a URL, a
    path outside the upload folder) end in a specific message instead of a bare error."""
    import gradio as gr

    class CheckedBlocks(gr.Blocks):
        async def preprocess_data(self, block_fn, inputs, state, explicit_call=False):
            predict = block_fn.api_name == "predict"
            if predict:  # calls from before the speaker options send three inputs
                inputs = api_values(inputs)
            try:
                if predict and len(inputs) >= len(API_INPUTS):
                    check_options(*inputs[1 : len(API_INPUTS)])  # before Gradio turns any value into text
                return await super().preprocess_data(block_fn, inputs, state, explicit_call)
            except Exception as e:
                explain = malformed_call_message
                if block_fn.api_name == "predict_batch":
                    from .ui_batch import malformed_batch_message as explain
                message = explain(list(inputs), e)
                log.warning("refused a malformed call to %s: %s", block_fn.name, message)
                raise gr.Error(message, title="请求无效 Invalid request", print_exception=False) from None

    return CheckedBlocks


def launch(demo, settings: Settings, **options):
    """Serve `demo`: uploads limited to `settings.max_file_mb`, only the example clip
    servable from disk (downloads are served as cache copies), the login (with a growing
    wait after failures) when set, the page's theme and styles applied."""
    auth = LoginGuard(*settings.auth).check if settings.auth else None
    keep_serving = not options.pop("prevent_thread_lock", False)
    launched = demo.launch(
        server_name=settings.host,
        server_port=settings.port,
        auth=auth,
        max_file_size=settings.max_file_bytes,
        allowed_paths=[str(EXAMPLE_AUDIO.parent)],
        theme=theme(),
        css=CSS,
        js=upload_script(AUDIO_ELEMENT_ID),
        footer_links=["api", "settings"],
        quiet=True,  # Gradio's own start-up lines end with a share=True hint that no option here supports
        prevent_thread_lock=True,
        **options,
    )
    print(f"* Running on local URL:  {demo.local_url}", flush=True)
    if keep_serving:
        demo.block_thread()
    return launched
