"""The web page: plain functions that turn a recognition into what the page shows, then the Gradio app.

    model = load_model()  # loads and warms up
    demo = build_demo(model, output_root="outputs")
    launch(demo, output_root="outputs")

`recognize_file` is the whole recognition of one upload (decode, recognise, save the
output folder, write the processing log); the functions after it shape its result for
the page's components; `build_demo` wires them to Gradio. The page's button and the REST
API (`api_name="predict"`, returning the result JSON and the output files) are two
queued events that share one model slot, so recognitions run one at a time.
"""

from __future__ import annotations

import html
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .audio import SAMPLE_RATE, Audio, AudioLimits
from .errors import Emotion2vecError
from .outputs import AUDIO_FILE, DEFAULT_OUTPUT_ROOT, EMBEDDING_FILE, RESULT_FILE, save_recognition
from .pipeline import ProgressCallback
from .results import EMOTION_LABELS, FRAME_HOP_S, EmotionResult, label_for

EXAMPLE_AUDIO = Path(__file__).parent / "assets" / "example_zh.wav"
ACCEPTED_FORMATS = "WAV / MP3 / M4A / FLAC / OGG"
RECOMMENDED_DURATION = "1–30 s"
GRANULARITIES = {  # value -> (radio label, one-line explanation)
    "utterance": ("整句级别 (utterance)", "整段音频给出一个情感 · one emotion for the whole clip"),
    "frame": ("帧级别 (frame)", "每 20 ms 一个情感，画出随时间的变化 · an emotion every 20 ms, plotted over time"),
}
EMOTION_COLORS = {  # one colour per emotion, shared by the score chart and the time plot
    "angry": "#e4572e",
    "disgusted": "#6a994e",
    "fearful": "#7b2cbf",
    "happy": "#f4a100",
    "neutral": "#6c757d",
    "other": "#17becf",
    "sad": "#3a86ff",
    "surprised": "#ff5d8f",
    "unknown": "#b8b8b8",
}
TRACK_POINTS = 400  # most points per emotion line in the time plot
TRACK_STEPS_S = (0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0)  # point spacings and windows, seconds
TRACK_SMOOTHING_SHARE = 60  # the moving average spans about 1/60 of the clip
SEGMENT_MIN_S = 0.5  # shortest segment in the table for clips up to SEGMENT_ROWS * SEGMENT_MIN_S
SEGMENT_ROWS = 120  # about the most segments the table shows for a long clip
PAGE_JSON_ITEMS = 200  # longest list the page's JSON viewer shows in full
DEFAULT_QUEUE_SIZE = 16  # requests waiting for the model before new ones are turned away
DEFAULT_MAX_FILE_MB = AudioLimits().max_file_bytes / 2**20  # upload size limit: the engine's file limit
MODEL_CONCURRENCY_ID = "model"  # every event that runs the model shares this one slot


# -- recognition --------------------------------------------------------------------------


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

    @property
    def files(self) -> list[str]:
        """Paths of the downloads: result.json, processed_audio.wav, and embedding.npy when asked."""
        names = [RESULT_FILE, AUDIO_FILE] + ([EMBEDDING_FILE] if self.result.embedding is not None else [])
        return [str(self.folder / name) for name in names]


def recognize_file(
    model,
    path: str | Path,
    granularity: str = "utterance",
    embedding: bool = False,
    output_root: str | Path = DEFAULT_OUTPUT_ROOT,
    progress: ProgressCallback | None = None,
    name: str | None = None,
) -> PageRecognition:
    """Decode, recognise and save one audio file, logging each step.

    `name` is how messages call the file (default: the path's file name, which for an
    upload is the user's own file name). Raises the engine's `Emotion2vecError`s, whose
    messages start with `name`.
    """
    name = name or Path(path).name
    step = progress or (lambda fraction, text: None)
    step(0.0, "校验与解码 Validating and decoding")
    started = time.perf_counter()
    audio = model.decode(path, name=name)
    decode_s = time.perf_counter() - started
    log = [
        f"[1/4] 校验 Validation: {name} ✓ ({audio.source_format}, {audio.source_channels} ch, "
        f"{audio.source_rate} Hz, {audio.duration_s:.2f} s; decoded in {decode_s:.2f} s)",
        f"[2/4] 重采样 Resampling: {audio.source_rate} Hz {audio.source_channels} ch → "
        f"{SAMPLE_RATE} Hz mono, {audio.duration_s:.2f} s ({len(audio.waveform)} samples)",
    ]
    started = time.perf_counter()
    result = model.recognize(
        [audio], granularity, embedding,
        lambda fraction, text: step(0.05 + 0.9 * fraction, f"推理 Inference: {text}"),
    )[0]
    infer_s = time.perf_counter() - started
    frames = f", {len(result.frame_scores)} frames" if result.frame_scores is not None else ""
    shape = f", embedding {tuple(result.embedding.shape)}" if result.embedding is not None else ""
    log.append(
        f"[3/4] 推理 Inference: {granularity} on {model.device} in {infer_s:.2f} s "
        f"({audio.duration_s / max(infer_s, 1e-6):.0f}× real time{frames}{shape})"
    )
    step(0.97, "保存 Saving")
    folder = save_recognition(result, audio, output_root)
    data = json.loads((folder / RESULT_FILE).read_text(encoding="utf-8"))
    data["output_folder"] = folder.name
    page = PageRecognition(result, audio, folder, data, log)
    saved = ", ".join(Path(f).name for f in page.files)
    log.append(f"[4/4] 保存 Saving: {folder.name}/ ({saved})")
    log.append(f"结果 Result: {result.display} {result.confidence:.1%}")
    return page


# -- what the page shows ------------------------------------------------------------------


def emotion_name(key: str) -> str:
    """Bilingual chart label, Chinese first: "😊 快乐 Happy"."""
    label = label_for(key)
    return f"{label.emoji} {label.chinese} {label.english}"


def headline_html(result: EmotionResult | None) -> str:
    """The main emotion card: "😊 快乐 (Happy) 置信度: 85.3%", or a hint before any result."""
    if result is None:
        return (
            '<div class="e2v-card e2v-empty">等待识别 · Waiting for audio<br>'
            "<small>上传或录制音频，然后点击 🎯 开始识别 · Upload or record audio, then press 🎯 开始识别</small></div>"
        )
    label = label_for(result.emotion)
    mode = GRANULARITIES.get(result.granularity, (result.granularity,))[0]
    return (
        f'<div class="e2v-card" style="--e2v-color: {EMOTION_COLORS.get(result.emotion, "#888")}">'
        f'<div class="e2v-emoji">{html.escape(label.emoji)}</div>'
        '<div class="e2v-text">'
        f'<div class="e2v-main">{html.escape(label.display)} '
        f'<span class="e2v-conf">置信度: {result.confidence:.1%}</span></div>'
        f'<div class="e2v-bar"><span style="width: {result.confidence * 100:.1f}%"></span></div>'
        f'<div class="e2v-meta">{html.escape(mode)} · {result.duration_s:.2f} s · '
        f"{html.escape(result.source or '')}</div>"
        "</div></div>"
    )


def score_table(result: EmotionResult):
    """Utterance scores as a DataFrame for the bar chart: columns emotion (label), score (0..1).

    Rows follow the checkpoint's label order, so bars keep their places between runs.
    """
    import pandas as pd

    return pd.DataFrame(
        {
            "emotion": [emotion_name(key) for key in result.scores],
            "score": [round(float(p), 4) for p in result.scores.values()],
        }
    )


def nice_step_s(seconds: float) -> float:
    """The shortest of TRACK_STEPS_S that is at least `seconds`."""
    return next((step for step in TRACK_STEPS_S if step >= seconds), TRACK_STEPS_S[-1])


def track_spacing_s(duration_s: float, max_points: int = TRACK_POINTS) -> tuple[float, float]:
    """(step, smoothing window) of the time plot, in seconds: one point per step, at most
    `max_points` per line, each the mean of a window of about 1/60 of the clip centred on
    it (30 s clip: a point every 0.1 s over 0.5 s; 10 minutes: every 2 s over 10 s)."""
    step_s = nice_step_s(duration_s / max_points)
    return step_s, max(step_s, nice_step_s(duration_s / TRACK_SMOOTHING_SHARE))


def emotion_track(result: EmotionResult, max_points: int = TRACK_POINTS):
    """Frame scores as a smoothed, thinned track for the time plot.

    Returns (DataFrame, step_s, window_s): a long-form frame with columns time_s (seconds),
    score (0..1, the moving average of the frame scores over window_s centred there;
    shorter at the clip's ends) and emotion (label), one row per emotion every step_s.
    Smoothing tames the 20 ms flicker and thinning keeps a 10-minute track light. An
    utterance result gives an empty frame.
    """
    import pandas as pd

    if result.frame_scores is None or len(result.frame_scores) == 0:
        return pd.DataFrame({"time_s": [], "score": [], "emotion": []}), 0.0, 0.0
    scores = np.asarray(result.frame_scores, dtype=np.float64)  # (T, K)
    frames = len(scores)
    step_s, window_s = track_spacing_s(frames * FRAME_HOP_S, max_points)
    step, half = max(1, round(step_s / FRAME_HOP_S)), max(0, round(window_s / FRAME_HOP_S) // 2)
    centres = np.arange(step // 2, frames, step)  # frame index of each point, (P,)
    totals = np.vstack([np.zeros((1, scores.shape[1])), np.cumsum(scores, axis=0)])  # (T + 1, K)
    low, high = np.maximum(centres - half, 0), np.minimum(centres + half + 1, frames)
    means = (totals[high] - totals[low]) / (high - low)[:, None]  # (P, K)
    names = [emotion_name(key) for key in result.labels]
    track = pd.DataFrame(
        {
            "time_s": np.repeat(np.round(centres * FRAME_HOP_S + FRAME_HOP_S / 2, 3), len(names)),
            "score": np.round(means, 4).reshape(-1),
            "emotion": np.tile(names, len(centres)),
        }
    )
    return track, step_s, window_s


def segment_min_s(duration_s: float) -> float:
    """Shortest segment in the table: 0.5 s, longer for long clips so it stays about
    SEGMENT_ROWS rows (10 minutes -> 5 s)."""
    return max(SEGMENT_MIN_S, round(duration_s / SEGMENT_ROWS, 1))


def segment_table(result: EmotionResult):
    """The dominant emotion per segment as a DataFrame with bilingual column names."""
    import pandas as pd

    columns = ["开始 Start (s)", "结束 End (s)", "时长 Duration (s)", "情绪 Emotion", "置信度 Confidence"]
    rows = [
        [
            f"{seg['start_s']:.2f}",
            f"{seg['end_s']:.2f}",
            f"{seg['end_s'] - seg['start_s']:.2f}",
            label_for(seg["emotion"]).display,
            f"{seg['confidence']:.1%}",
        ]
        for seg in result.frame_runs(segment_min_s(result.duration_s))
    ]
    return pd.DataFrame(rows, columns=columns)


def track_legend_html(labels: list[str], step_s: float, window_s: float, shortest_segment_s: float) -> str:
    """The time plot's legend (colour swatches that wrap, unlike the chart's own) and how
    the track was smoothed."""
    items = "".join(
        f'<span class="e2v-key"><i style="background: {EMOTION_COLORS.get(key, "#888")}"></i>'
        f"{html.escape(label_for(key).display)}</span>"
        for key in labels
    )
    return (
        f'<div class="e2v-legend">{items}</div>'
        f'<div class="e2v-meta">曲线为 {window_s:g} s 滑动平均，每 {step_s:g} s 一点 · {window_s:g} s moving '
        f"average of the 20 ms frame scores, a point every {step_s:g} s · 表中分段最短 {shortest_segment_s:g} s · "
        f"table segments last at least {shortest_segment_s:g} s</div>"
    )


def page_json(data: dict, max_items: int = PAGE_JSON_ITEMS) -> dict:
    """The result JSON for the page's viewer: long lists (a long clip's frame scores,
    many segments) are replaced by a note, since the browser's JSON tree cannot hold a
    10-minute track; the full data is in the downloadable result.json and the API."""
    shown = dict(data)
    for key in ("frame_scores", "segments"):
        rows = shown.get(key)
        if isinstance(rows, list) and len(rows) > max_items:
            shown[key] = f"{len(rows)} 项 items — 完整内容见 result.json · full list in result.json"
    return shown


def error_message(error: Emotion2vecError) -> str:
    """An engine error for the page's toast, HTML-escaped (toasts render HTML)."""
    return html.escape(str(error), quote=False)


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
"""
EMOJI_FONTS = ["Noto Color Emoji", "Apple Color Emoji", "Segoe UI Emoji"]
FONTS = ["Noto Sans CJK SC", "PingFang SC", "Microsoft YaHei", *EMOJI_FONTS, "system-ui", "sans-serif"]
MONO_FONTS = ["Noto Sans Mono CJK SC", "ui-monospace", "Consolas", "monospace"]


def theme():
    """The page theme, on local fonts only (no web font downloads; CJK first)."""
    import gradio as gr

    return gr.themes.Soft(primary_hue="indigo", font=FONTS, font_mono=MONO_FONTS)


def build_demo(
    model,
    output_root: str | Path = DEFAULT_OUTPUT_ROOT,
    queue_size: int = DEFAULT_QUEUE_SIZE,
):
    """The page for a loaded `model` (a Recognizer): a gr.Blocks with its queue configured.

    Recognitions run one at a time (one model, one device), at most `queue_size` wait,
    and the direct REST route that would skip the queue is closed. Each recognition
    writes an output folder under `output_root`.
    """
    import gradio as gr

    def run(audio, granularity, embedding, progress, for_page=False) -> PageRecognition:
        """recognize_file for an event, its failures turned into messages for the page
        (which adds a Chinese headline) or the API (the engine's message as it is)."""
        if not audio:
            raise gr.Error("请先上传或录制一段音频 · Please upload or record an audio clip first.",
                           title="没有音频 No audio", print_exception=False)
        if granularity not in GRANULARITIES:
            raise gr.Error(f"granularity must be one of {', '.join(GRANULARITIES)}, "
                           f"not {html.escape(str(granularity))}.", title="参数错误 Invalid option",
                           print_exception=False)
        try:
            return recognize_file(
                model, audio, granularity, bool(embedding), output_root,
                progress=lambda fraction, text: progress(fraction, desc=text),
            )
        except Emotion2vecError as e:
            message = error_message(e)
            if for_page:
                message = f"无法使用这段音频 · Cannot use this audio:<br>{message}"
            raise gr.Error(message, title="无法使用这段音频 Cannot use this audio", duration=20,
                           print_exception=False) from e
        except OSError as e:
            raise gr.Error(f"无法保存结果 Could not write the output folder: {html.escape(e.strerror or str(e))}",
                           title="保存失败 Saving failed") from e

    def predict(audio, granularity="utterance", embedding=False, progress=gr.Progress()):
        """Recognise the emotion in one audio file (WAV, MP3, M4A, FLAC, OGG, WEBM).

        granularity: "utterance" (one emotion for the clip) or "frame" (adds a 20 ms track);
        embedding: also save embedding.npy. Returns the result JSON (result.json's content
        plus `output_folder`, the saved folder's name) and the output files: result.json,
        processed_audio.wav, and embedding.npy when asked.
        """
        page = run(audio, granularity, embedding, progress)
        return page.data, page.files

    def recognize_page(audio, granularity, embedding, progress=gr.Progress()):
        """The page's recognition: everything the right-hand panel shows."""
        page = run(audio, granularity, embedding, progress, for_page=True)
        result = page.result
        frame_mode = result.frame_scores is not None
        track, legend = None, ""
        if frame_mode:
            track, step_s, window_s = emotion_track(result)
            legend = track_legend_html(result.labels, step_s, window_s, segment_min_s(result.duration_s))
        return (
            headline_html(result),
            score_table(result),
            "\n".join(page.log),
            gr.update(visible=frame_mode),
            track,
            legend,
            segment_table(result) if frame_mode else None,
            page_json(page.data),
            page.files,
        )

    def load_example():
        return str(EXAMPLE_AUDIO)

    names = [emotion_name(key) for key in model.labels]
    color_map = {emotion_name(key): EMOTION_COLORS.get(key, "#888888") for key in model.labels}
    legend = " · ".join(label_for(key).display for key in EMOTION_LABELS)

    with gr.Blocks(title="emotion2vec+ 语音情感识别 Speech Emotion Recognition") as demo:
        gr.Markdown(
            "# 🎭 emotion2vec+ 语音情感识别 · Speech Emotion Recognition\n"
            f"模型 Model: **{model.model_name}** · 设备 Device: **{model.device}** · "
            f"9 类情感 9 emotions: {legend}",
            elem_classes="e2v-header",
        )
        with gr.Row(equal_height=False):
            with gr.Column(scale=1, min_width=340):
                audio_input = gr.Audio(
                    sources=["upload", "microphone"], type="filepath", elem_id="e2v-audio",
                    label="音频输入 Audio input",
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
                    "\n".join(f"- **{label}**: {text}" for label, text in GRANULARITIES.values()),
                    elem_classes="e2v-help",
                )
                embedding_input = gr.Checkbox(
                    label="提取 Embedding 特征", value=False, elem_id="e2v-embedding",
                    info="另存 embedding.npy · also save the features (utterance: (D,), frame: (T, D))",
                )
                run_button = gr.Button("🎯 开始识别", variant="primary", size="lg", elem_id="e2v-run")
                example_button = gr.Button("加载示例音频", variant="secondary", elem_id="e2v-example")
            with gr.Column(scale=1, min_width=400):
                headline = gr.HTML(headline_html(None), elem_id="e2v-headline")
                score_plot = gr.BarPlot(
                    x="emotion", y="score", color="emotion", color_map=color_map, colors_in_legend=[],
                    sort=names, y_lim=[0, 1], x_title="情绪 Emotion", y_title="概率 Probability",
                    x_label_angle=-35, height=300, label="得分分布 Score distribution", show_label=True,
                    tooltip=["emotion", "score"], elem_id="e2v-scores",
                )
                with gr.Column(visible=False, elem_id="e2v-frame-views") as frame_views:
                    track_plot = gr.LinePlot(
                        x="time_s", y="score", color="emotion", color_map=color_map, colors_in_legend=[], y_lim=[0, 1],
                        x_title="时间 Time (s)", y_title="概率 Probability", color_title="情绪 Emotion",
                        label="情绪随时间变化 Emotion over time", show_label=True,
                        elem_id="e2v-track",
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
                    label="下载 Downloads (result.json · processed_audio.wav · embedding.npy)",
                    file_count="multiple", interactive=False, elem_id="e2v-files",
                )
        with gr.Accordion("说明 Notes", open=False):
            gr.Markdown(
                "- 每次识别都会在服务器的输出目录中保存一个 `outputs_YYYYMMDD_HHMMSS` 文件夹 · every recognition "
                "is saved as an `outputs_YYYYMMDD_HHMMSS` folder on the server.\n"
                "- 识别请求排队依次处理 · requests are queued and run one at a time.\n"
                "- 也可以通过 REST API 调用 (页面底部 “Use via API”) · the recognition is also a REST API, "
                "`/predict` (see “Use via API” at the bottom of the page)."
            )

        page_outputs = [headline, score_plot, log_box, frame_views, track_plot, track_legend, segments,
                        result_json, files_output]
        run_button.click(
            recognize_page,
            inputs=[audio_input, granularity_input, embedding_input],
            outputs=page_outputs,
            api_visibility="private",
            concurrency_limit=1,
            concurrency_id=MODEL_CONCURRENCY_ID,
            show_progress_on=[headline],
        )
        # The REST API: the same recognition, returning only the result JSON and the files.
        api_trigger = gr.Button(visible=False)
        api_trigger.click(
            predict,
            inputs=[audio_input, granularity_input, embedding_input],
            outputs=[result_json, files_output],
            api_name="predict",
            concurrency_limit=1,
            concurrency_id=MODEL_CONCURRENCY_ID,
        )
        example_button.click(
            load_example, outputs=[audio_input], api_visibility="private", concurrency_limit=None,
        )
    demo.queue(max_size=queue_size, api_open=False, default_concurrency_limit=1)
    return demo


def launch(
    demo,
    *,
    host: str = "127.0.0.1",
    port: int = 7860,
    auth: tuple[str, str] | None = None,
    max_file_mb: float = DEFAULT_MAX_FILE_MB,
    output_root: str | Path = DEFAULT_OUTPUT_ROOT,
    **options,
):
    """Serve `demo`: uploads limited to `max_file_mb` MB, the output folders and the
    example clip servable as downloads, the page's theme and styles applied."""
    return demo.launch(
        server_name=host,
        server_port=port,
        auth=auth,
        max_file_size=int(max_file_mb * 1024 * 1024),
        allowed_paths=[str(Path(output_root).resolve()), str(EXAMPLE_AUDIO.parent)],
        theme=theme(),
        css=CSS,
        footer_links=["api", "settings"],
        **options,
    )
