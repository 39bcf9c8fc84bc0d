"""The page's conversation views (granularity "segment"): who felt what, when.

Plain functions from a segment EmotionResult to HTML and a table (no Gradio), tested on
their own, plus the blocks ui.py places: the speaker options under the granularity
choice, and the result's views (a timeline with one lane per speaker, a summary card
per speaker, the segment table).

The timeline is HTML made here, not a chart: each segment is a bar placed by percent in
its speaker's lane, coloured by its emotion, with its details as a tooltip. A long
recording is folded into rows of equal span (like lines of text), so a one-hour
session keeps a few pixels per second instead of a hair per segment.
"""

from __future__ import annotations

import html
import math
import re

import gradio as gr
import pandas as pd

from ..results import EmotionResult, counted, label_for, noun_for
from ..segments.conversation import ONE_SPEAKER, check_speaker_names, check_speakers
from .views import EMOTION_COLORS

SPEAKER_CHOICES = {  # the page's and the API's speaker modes: value -> radio label
    "one": "单人 · one speaker",
    "channels": "立体声分轨 · one per channel",
    "auto": "自动区分说话人 · auto",
    "2": "两人 · 2",
    "3": "三人 · 3",
}
DEFAULT_SPEAKERS = ONE_SPEAKER
SPEAKERS_HELP = (
    "立体声分轨：每个声道一位说话人（如客服录音）· one speaker per channel (call recordings); "
    "自动：按声音区分说话人 · automatic: tell voices apart in one channel."
)
NAME_SEPARATORS = r"[,，;；]"  # names are separated by commas or semicolons (also the Chinese ones)
TIMELINE_SINGLE_ROW_S = 120.0  # recordings up to this long fit one timeline row ...
TIMELINE_MAX_ROWS = 12  # ... longer ones are folded into about this many rows at most
TIMELINE_SPANS_S = (120, 180, 300, 600, 900, 1200, 1800, 3600)  # the row spans a long recording may get
TICK_STEPS_S = (1, 2, 5, 10, 15, 20, 30, 60, 120, 300, 600, 900, 1800, 3600)
TICKS_PER_ROW = 6  # about this many time labels per row
MOMENTS_SHOWN = 3  # emotions whose strongest moments a speaker's card lists
CONVERSATION_CSS = """
#e2v-speaker-options { padding: 0; }
.e2v-conv-stats { font-size: 14px; margin-bottom: 6px; }
.e2v-tl { display: flex; flex-direction: column; gap: 6px; }
.e2v-tl-row { display: grid; grid-template-columns: 76px 1fr; row-gap: 2px; align-items: center; }
.e2v-tl-name { font-size: 12px; font-weight: 600; overflow: hidden; text-overflow: ellipsis; white-space: nowrap;
  padding-right: 6px; }
.e2v-tl-lane { position: relative; height: 15px; border-radius: 3px; background: var(--background-fill-secondary);
  border: 1px solid var(--border-color-primary); }
.e2v-tl-lane span { position: absolute; top: 1px; bottom: 1px; min-width: 2px; border-radius: 2px; }
.e2v-tl-lane span.e2v-short {
  background-image: repeating-linear-gradient(45deg, rgba(255,255,255,.6) 0 2px, transparent 2px 5px); }
.e2v-tl-lane span.e2v-mixed { outline: 1px dashed var(--body-text-color); outline-offset: -1px; }
.e2v-tl-axis { position: relative; height: 14px; font-size: 11px; line-height: 14px; color: var(--body-text-color-subdued); }
.e2v-tl-axis span { position: absolute; top: 0; transform: translateX(-50%); white-space: nowrap; }
.e2v-tl-axis span:first-child { transform: none; }
.e2v-tl-axis span:last-child:not(:first-child) { transform: translateX(-100%); }
.e2v-spk-list { display: grid; grid-template-columns: repeat(auto-fit, minmax(260px, 1fr)); gap: 10px; }
.e2v-spk { border: 1px solid var(--border-color-primary); border-left: 6px solid var(--e2v-color, #888);
  border-radius: 10px; padding: 8px 12px; background: var(--background-fill-secondary); font-size: 13px; }
.e2v-spk-name { font-size: 16px; font-weight: 700; }
.e2v-share { display: flex; height: 10px; border-radius: 5px; overflow: hidden; margin: 6px 0 4px;
  background: var(--border-color-primary); }
.e2v-moments { margin-top: 4px; }
"""


# -- options ------------------------------------------------------------------------------


def parse_speakers(value) -> str | int | None:
    """A page or API speaker mode -> `predict`'s `speakers`: "one" (or nothing) -> None,
    "channels", "auto", or a count ("2" -> 2); ValueError says what is accepted."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        return check_speakers(value.strip() if isinstance(value, str) else value)
    except ValueError as e:
        raise ValueError(f"{e}.") from None


def parse_speaker_names(text, speakers: str | int | None) -> list[str] | None:
    """"agent, customer" -> ["agent", "customer"] (None when empty); ValueError when a name
    is empty or repeated, or the count cannot fit `speakers` (one name for one speaker,
    N for N; for channels the decoded file decides, see `check_channel_names`)."""
    if text is None or (isinstance(text, str) and not text.strip()):
        return None
    if not isinstance(text, str):
        raise ValueError(f'speaker_names must be text such as "agent, customer", not {text!r}.')
    try:
        return check_speaker_names(re.split(NAME_SEPARATORS, text), speakers)
    except ValueError as e:
        raise ValueError(f"{e} (names are separated by commas).") from None


def check_channel_names(names: list[str] | None, channels: int, source: str) -> None:
    """ValueError unless `names` (when given) name each of a recording's `channels` once."""
    if names and channels >= 2 and len(names) != channels:
        raise ValueError(
            f"{source}: {counted(len(names), 'speaker name')} given for a recording with {channels} channels; "
            "give one name per channel, in channel order, or none."
        )


# -- views --------------------------------------------------------------------------------


def clock(seconds: float, decimals: int = 1) -> str:
    """75.26 -> "1:15.3"; 3725 -> "1:02:05.0" (decimals=0: "1:15", "1:02:05")."""
    scale = 10**decimals
    units = round(seconds * scale)
    whole, fraction = divmod(units, scale)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    text = f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"
    return f"{text}.{fraction:0{decimals}d}" if decimals else text


def row_span_s(duration_s: float) -> float:
    """Seconds per timeline row: the whole recording up to TIMELINE_SINGLE_ROW_S, else the
    shortest of TIMELINE_SPANS_S that keeps it within TIMELINE_MAX_ROWS rows (60 min: 5 min rows)."""
    if duration_s <= TIMELINE_SINGLE_ROW_S:
        return max(duration_s, 1e-3)
    wanted = duration_s / TIMELINE_MAX_ROWS
    return float(next((span for span in TIMELINE_SPANS_S if span >= wanted), math.ceil(wanted / 3600) * 3600))


def tick_step_s(span_s: float) -> float:
    """The shortest of TICK_STEPS_S giving at most about TICKS_PER_ROW labels in a row."""
    return float(next((step for step in TICK_STEPS_S if span_s / step <= TICKS_PER_ROW), TICK_STEPS_S[-1]))


def speaker_names(result: EmotionResult) -> list[str]:
    """Speakers in order of first appearance (the summaries' order)."""
    return [summary.speaker for summary in result.speakers]


def segment_tooltip(segment) -> str:
    flags = (" · 短 short (<1 s)" if segment.short else "") + (" · 可能混有他人 may hold another voice"
                                                               if segment.mixed_speakers else "")
    return (f"{clock(segment.start_s)}–{clock(segment.end_s)} · {segment.speaker} · {segment.display} "
            f"{segment.confidence:.0%}{flags}")


def timeline_html(result: EmotionResult) -> str:
    """One lane per speaker, each segment a bar coloured by its emotion (hatched when short,
    outlined when it may hold a second voice), folded into rows of `row_span_s`."""
    names = speaker_names(result)
    if not result.segments:
        return f'<div class="e2v-meta">{html.escape(result.note or "No segments.")}</div>'
    span = row_span_s(result.duration_s)
    rows = max(1, math.ceil(result.duration_s / span - 1e-9))
    step = tick_step_s(span)
    parts = ['<div class="e2v-tl">']
    for row in range(rows):
        row_start, row_end = row * span, min((row + 1) * span, result.duration_s)
        lanes = {name: [] for name in names}
        for segment in result.segments:
            start, end = max(segment.start_s, row_start), min(segment.end_s, row_end)
            if end <= start:
                continue
            classes = " ".join(c for c, on in (("e2v-short", segment.short), ("e2v-mixed", segment.mixed_speakers)) if on)
            lanes[segment.speaker].append(
                f'<span class="{classes}" title="{html.escape(segment_tooltip(segment))}" '
                f'data-emotion="{html.escape(segment.emotion)}" style="left: {(start - row_start) / span * 100:.3f}%; '
                f'width: {(end - start) / span * 100:.3f}%; background-color: {EMOTION_COLORS.get(segment.emotion, "#888")}">'
                "</span>"
            )
        parts.append('<div class="e2v-tl-row">')
        for name in names:
            parts.append(f'<div class="e2v-tl-name" title="{html.escape(name)}">{html.escape(name)}</div>'
                         f'<div class="e2v-tl-lane">{"".join(lanes[name])}</div>')
        ticks = []
        tick = math.ceil(row_start / step) * step
        while tick <= row_end + 1e-6:
            ticks.append(f'<span style="left: {(tick - row_start) / span * 100:.3f}%">{clock(tick, 0)}</span>')
            tick += step
        parts.append(f'<div></div><div class="e2v-tl-axis">{"".join(ticks)}</div></div>')
    parts.append("</div>")
    return "".join(parts) + timeline_legend_html(result)


def timeline_legend_html(result: EmotionResult) -> str:
    """The colours of the emotions present, and what hatching and outlines mean."""
    present = [key for key in result.labels if any(s.emotion == key for s in result.segments)]
    keys = "".join(
        f'<span class="e2v-key"><i style="background: {EMOTION_COLORS.get(key, "#888")}"></i>'
        f"{html.escape(label_for(key).display)}</span>"
        for key in present
    )
    marks = "斜纹：短于 1 s，情感不可靠 · hatched: shorter than 1 s, emotion unreliable"
    if any(s.mixed_speakers for s in result.segments):
        marks += " · 虚线框：可能混有另一说话人 · dashed outline: may hold a second voice"
    return (f'<div class="e2v-legend" style="margin-top: 8px">{keys}</div>'
            f'<div class="e2v-meta">{marks} · 悬停查看详情 · hover a bar for its details</div>')


def stats_html(result: EmotionResult) -> str:
    """One line: speakers, segments, speech time, and how long the analysis took."""
    speech_s = sum(s.duration_s for s in result.segments)
    timings = result.timings_s
    parts = [f"{key} {timings[key]:.2f} s" for key in ("vad", "speakers", "emotion") if key in timings]
    took = f"分析用时 analysis took <b>{timings.get('total', 0.0):.2f} s</b>"
    if parts:
        took += f" ({' · '.join(parts)})"
    return (
        f'<div class="e2v-conv-stats"><b>{len(result.speakers)}</b> 位说话人 {noun_for(len(result.speakers), "speaker")} · '
        f"<b>{len(result.segments)}</b> 个语段 {noun_for(len(result.segments), 'segment')} · "
        f"语音 speech <b>{clock(speech_s)}</b> / "
        f"{clock(result.duration_s)} · {took}</div>"
    )


def speaker_cards_html(result: EmotionResult) -> str:
    """A card per speaker: speech time, segments, dominant emotion, emotion shares as a
    bar and in words, and the strongest moments of the most present emotions."""
    cards = []
    for summary in result.speakers:
        dominant = label_for(summary.dominant_emotion)
        shares = sorted(((k, v) for k, v in summary.emotion_shares.items() if v > 0), key=lambda kv: -kv[1])
        bar = "".join(
            f'<span style="width: {share * 100:.2f}%; background: {EMOTION_COLORS.get(key, "#888")}" '
            f'title="{html.escape(label_for(key).display)} {share:.0%}"></span>'
            for key, share in shares
        )
        words = " · ".join(f"{label_for(key).emoji} {label_for(key).chinese} {share:.0%}" for key, share in shares)
        ranked = sorted(summary.strongest.items(), key=lambda kv: -summary.emotion_shares.get(kv[0], 0.0))
        moments = "; ".join(
            f"{label_for(key).emoji} {label_for(key).chinese} "
            + ", ".join(f"{clock(m['start_s'], 0)}–{clock(m['end_s'], 0)} {m['confidence']:.0%}" for m in items)
            for key, items in ranked[:MOMENTS_SHOWN]
        )
        cards.append(
            f'<div class="e2v-spk" style="--e2v-color: {EMOTION_COLORS.get(summary.dominant_emotion, "#888")}">'
            f'<div><span class="e2v-spk-name">{html.escape(summary.speaker)}</span> · '
            f"主要 dominant <b>{html.escape(dominant.display)}</b></div>"
            f'<div class="e2v-meta">说话 speech {clock(summary.speech_s)} · {summary.num_segments} 段 '
            f'{noun_for(summary.num_segments, "segment")}</div>'
            f'<div class="e2v-share">{bar}</div><div>{html.escape(words)}</div>'
            f'<div class="e2v-moments e2v-meta">最强时刻 strongest moments: {html.escape(moments or "—")}</div>'
            "</div>"
        )
    return f'<div class="e2v-spk-list">{"".join(cards)}</div>'


def summary_html(result: EmotionResult) -> str:
    """The speaker cards, or nothing when no speech was found (the timeline says so)."""
    return speaker_cards_html(result) if result.segments else ""


SEGMENT_COLUMNS = ["时间 Time", "时长 s", "说话人 Speaker", "情绪 Emotion", "置信度 Conf.", "提示 Flag"]


def conversation_table(result: EmotionResult):
    """The segments as a DataFrame: times, speaker, emotion with emoji, confidence, and a
    flag for short segments and those that may hold a second voice."""

    rows = []
    for s in result.segments:
        flags = (["⚠ 短 short"] if s.short else []) + (["⚠ 混合 mixed"] if s.mixed_speakers else [])
        rows.append([f"{clock(s.start_s)}–{clock(s.end_s)}", f"{s.duration_s:.1f}", s.speaker, s.display,
                     f"{s.confidence:.1%}", " ".join(flags)])
    return pd.DataFrame(rows, columns=SEGMENT_COLUMNS)


def conversation_outputs(result: EmotionResult) -> tuple:
    """What the conversation views show for `result`: (visible, summary, timeline, table);
    hidden and empty for other granularities."""
    if result.granularity != "segment":
        return False, "", "", None
    return True, summary_html(result), stats_html(result) + timeline_html(result), conversation_table(result)


# -- Gradio blocks --------------------------------------------------------------------------


def speaker_inputs():
    """The speaker mode and names, in a group shown only while "segment" is picked:
    returns (group, speakers radio, names textbox)."""

    with gr.Group(visible=False, elem_id="e2v-speaker-options") as group:
        speakers = gr.Radio(
            [(label, value) for value, label in SPEAKER_CHOICES.items()], value=DEFAULT_SPEAKERS,
            label="说话人 Speakers", info=SPEAKERS_HELP, elem_id="e2v-speakers",
        )
        names = gr.Textbox(
            label="说话人名称 Speaker names (可选 optional)", placeholder="agent, customer", max_lines=1,
            info="逗号分隔；分轨时按声道顺序，否则按出现顺序 · comma-separated; channel order for stereo, "
                 "else order of first appearance",
            elem_id="e2v-speaker-names",
        )
    return group, speakers, names


def show_speaker_inputs(granularity_input, group) -> None:
    """Show the speaker options exactly while "segment" is the chosen granularity."""

    granularity_input.change(
        lambda granularity: gr.update(visible=granularity == "segment"), inputs=[granularity_input],
        outputs=[group], api_visibility="private", queue=False,
    )


def conversation_views() -> list:
    """The result column's conversation views: [column, summary, timeline, table], the
    column hidden until a segment result arrives (filled by `conversation_outputs`)."""

    with gr.Column(visible=False, elem_id="e2v-conversation") as column:
        timeline = gr.HTML(label="时间线 Timeline", elem_id="e2v-timeline")
        summary = gr.HTML(label="说话人概要 Speakers", elem_id="e2v-speaker-summary")
        table = gr.Dataframe(
            label="语段 Segments", interactive=False, max_height=360, elem_id="e2v-conv-segments", wrap=True,
        )
    return [column, summary, timeline, table]
