"""The web page and its REST API: the Gradio app: layout, events, queue, launch.

    model = load_model(...)          # loads and warms up
    demo = build_demo(model, settings)
    launch(demo, settings)

The checks of a call live in requests.py, the recognition of one upload in single.py,
the batch tab in batch.py. `build_demo` lays out the page (an input column and a result column) and wires the
events; the page's button and the REST API (`api_name="predict"`) share one model slot.

Privacy: the output folders are never served. A user's downloads are copies put under
an unguessable name in Gradio's cache, which forgets them (and uploads) after
`cache_minutes`.
"""

from __future__ import annotations

import html
import logging
import secrets
import shutil
from pathlib import Path

import gradio as gr

from ..audio.decode import RECOMMENDED_S
from ..audio.formats import ACCEPTED_FORMATS
from ..engine.recognizer import ProgressCallback
from ..results import label_for
from ..settings import Settings
from .batch import BATCH_CSS, batch_tab, malformed_batch_message
from .conversation import CONVERSATION_CSS, DEFAULT_SPEAKERS, conversation_views, show_speaker_inputs, speaker_inputs
from .login import LoginGuard
from .requests import API_INPUTS, UserFacingError, api_values, check_options, malformed_call_message
from .single import Handlers
from .turns import TakingTurns
from .upload import upload_script
from .views import EMOTION_COLORS, EXAMPLE_LABEL, GRANULARITIES, RUN_LABEL, emotion_name, headline_html

log = logging.getLogger(__name__)

EXAMPLE_AUDIO = Path(__file__).parent.parent / "assets" / "example_zh.wav"
RECOMMENDED_DURATION = f"{RECOMMENDED_S[0]:g}–{RECOMMENDED_S[1]:g} s"
AUDIO_ELEMENT_ID = "e2v-audio"
MODEL_CONCURRENCY_ID = "model"  # every event that runs the model shares this one slot


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
#e2v-random-weights .e2v-banner { padding: 5px 12px; border-radius: 8px; border: 1px solid #f59e0b;
  background: #fef3c7; color: #92400e; font-size: 14px; }
.e2v-formats, .e2v-formats p { font-size: 13px !important; line-height: 1.45; }
""" + CONVERSATION_CSS + BATCH_CSS
EMOJI_FONTS = ["Noto Color Emoji", "Apple Color Emoji", "Segoe UI Emoji"]
FONTS = ["Noto Sans CJK SC", "PingFang SC", "Microsoft YaHei", *EMOJI_FONTS, "system-ui", "sans-serif"]
MONO_FONTS = ["Noto Sans Mono CJK SC", "ui-monospace", "Consolas", "monospace"]


def theme():
    """The page theme, on local fonts only (no web font downloads; CJK first)."""
    return gr.themes.Soft(primary_hue="indigo", font=FONTS, font_mono=MONO_FONTS)


def build_demo(model, settings: Settings):
    """The page for a loaded `model` (a Recognizer) served with `settings`: a gr.Blocks with
    its queue configured.

    Recognitions run one at a time (one model, one device), at most `settings.queue_size`
    wait, and the direct REST route that would skip the queue is closed. Uploads and
    served downloads are deleted from Gradio's cache after `settings.cache_minutes`.
    """

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
        if model.random_weights:
            gr.HTML(random_weights_banner(), elem_id="e2v-random-weights")
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
        # The example button loads the shipped clip, then recognises it as the run button would.
        example_button.click(
            lambda: str(EXAMPLE_AUDIO), outputs=[audio_input], api_visibility="private", concurrency_limit=None,
        ).success(
            recognize_page, inputs=inputs, outputs=page_outputs, api_visibility="private",
            concurrency_limit=1, concurrency_id=MODEL_CONCURRENCY_ID, show_progress_on=[page_outputs[0]],
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


RANDOM_WEIGHTS_BANNER = (
    "⚠️ <b>随机权重模型，情绪结果没有意义 · Random-weight model: its emotions are meaningless.</b> "
    "此检查点由 build-checkpoint 以随机权重生成，用于测试和试用，未经训练 · this checkpoint was built with random "
    "weights (build-checkpoint) for tests and trials; it is not a trained model."
)


def random_weights_banner() -> str:
    """The header's notice for a model built with random weights (see results.RANDOM_WEIGHTS_WARNING)."""
    return f'<div class="e2v-banner" role="alert">{RANDOM_WEIGHTS_BANNER}</div>'


def _input_column():
    """The left column: the audio, the buttons right under it (in view on a 1366x768 screen
    whatever options are open), then the options and their help."""
    with gr.Column(scale=1, min_width=340):
        audio_input = gr.Audio(
            sources=["upload", "microphone"], type="filepath", elem_id=AUDIO_ELEMENT_ID, label="音频输入 Audio input",
            buttons=["download"],
        )
        gr.Markdown(
            "上传、拖放或用麦克风录音 · upload, drop a file or record · "
            f"格式 Formats: **{ACCEPTED_FORMATS}** · 推荐时长 Recommended: **{RECOMMENDED_DURATION}**"
            "（更长的音频也可以 · longer audio works too）",
            elem_classes=["e2v-help", "e2v-formats"],
        )
        with gr.Row(elem_id="e2v-actions"):
            run_button = gr.Button(RUN_LABEL, variant="primary", size="lg", elem_id="e2v-run")
            example_button = gr.Button(EXAMPLE_LABEL, variant="secondary", size="lg", elem_id="e2v-example")
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
    return audio_input, granularity_input, embedding_input, run_button, example_button, speaker_options


def _result_column(model) -> list:
    """The right column; returns its outputs in the order `Handlers.page_recognize` fills them."""
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
    card = (
        '<div class="e2v-card e2v-error">'
        f"<div><b>{html.escape(error.title)}</b><br>{html.escape(error.message, quote=False)}</div></div>"
    )
    return (card, "", f"错误 Error: {error.message}", gr.update(visible=False), None, "", None, None, None,
            *_no_conversation())


def _cleared_outputs() -> tuple:
    """The result column before any result: the waiting card, everything else empty."""
    return (headline_html(None), "", "", gr.update(visible=False), None, "", None, None, None, *_no_conversation())


def _no_conversation() -> tuple:
    """The conversation views hidden and empty (visibility, summary, timeline, table)."""
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
                explain = malformed_batch_message if block_fn.api_name == "predict_batch" else malformed_call_message
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
