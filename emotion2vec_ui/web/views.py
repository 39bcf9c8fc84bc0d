"""What the page shows: plain functions from an EmotionResult to HTML, tables and plot data.

No Gradio here (pandas for the tables), so each view is tested on its own.
"""

from __future__ import annotations

import html
from dataclasses import replace

import numpy as np
import pandas as pd

from ..results import FRAME_HOP_S, EmotionResult, label_for

GRANULARITIES = {  # value -> (radio label, one-line explanation)
    "utterance": ("整句级别 (utterance)", "整段音频给出一个情感 · one emotion for the whole clip"),
    "frame": ("帧级别 (frame)", "每 20 ms 一个情感，画出随时间的变化 · an emotion every 20 ms, plotted over time"),
    "segment": ("语段级别 (segment)", "找出每段话，每段一个情感，可区分说话人 · an emotion per stretch of speech, "
                "and who spoke (calls, sessions)"),
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
PAGE_JSON_DIGITS = 4  # decimals of the probabilities the page's JSON viewer shows (result.json keeps all)


def emotion_name(key: str) -> str:
    """Bilingual chart label, Chinese first: "😊 快乐 Happy"."""
    label = label_for(key)
    return f"{label.emoji} {label.chinese} {label.english}"


RUN_LABEL = "🎯 开始识别 Recognise"  # the single tab's button
EXAMPLE_LABEL = "🎧 识别示例 Run the example"  # loads the shipped clip and recognises it


def headline_html(result: EmotionResult | None, notes: list[str] | None = None) -> str:
    """The main emotion card: "😊 快乐 (Happy) 置信度: 85.3%", what that number is, and
    `notes` on the clip (see audio.clip_warnings); or a hint before any result."""
    if result is None:
        return (
            '<div class="e2v-card e2v-empty">等待识别 · Waiting for audio<br>'
            f"<small>上传或录制音频，然后点击 {RUN_LABEL} · Upload or record audio, then press {RUN_LABEL}</small></div>"
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
        '<div class="e2v-meta">置信度 = 模型对整段音频判为该情绪的概率 · confidence: the probability the model '
        "gives this emotion for the whole clip</div>"
        + "".join(f'<div class="e2v-note">⚠️ {html.escape(note)}</div>' for note in notes or [])
        + "</div></div>"
    )


def score_bars_html(result: EmotionResult | None) -> str:
    """The whole-clip scores of all emotions as labelled bars with percentages, in the
    checkpoint's label order (bars keep their places between runs); the winner in bold."""
    if result is None:
        return ""
    rows = "".join(
        f'<div class="e2v-score{" e2v-top" if key == result.emotion else ""}">'
        f'<span class="e2v-score-name">{html.escape(emotion_name(key))}</span>'
        f'<span class="e2v-score-bar"><i style="width: {score * 100:.1f}%; '
        f'background: {EMOTION_COLORS.get(key, "#888")}"></i></span>'
        f'<span class="e2v-score-value">{score:.1%}</span></div>'
        for key, score in result.scores.items()
    )
    return (
        '<div class="e2v-scores-box"><div class="e2v-scores-title">得分分布 Scores · 整段音频 whole clip</div>'
        f"{rows}</div>"
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


def smoothed_frame_scores(scores: np.ndarray, window_s: float) -> np.ndarray:
    """(T, K) frame scores -> (T, K): each frame's the mean over window_s seconds centred
    on it (shorter at the clip's ends). The time plot and the segment table both read it."""
    scores = np.asarray(scores, dtype=np.float64)
    frames = len(scores)
    half = max(0, round(window_s / FRAME_HOP_S) // 2)
    totals = np.vstack([np.zeros((1, scores.shape[1])), np.cumsum(scores, axis=0)])  # (T + 1, K)
    index = np.arange(frames)
    low, high = np.maximum(index - half, 0), np.minimum(index + half + 1, frames)
    return (totals[high] - totals[low]) / (high - low)[:, None]


def emotion_track(result: EmotionResult, max_points: int = TRACK_POINTS):
    """Frame scores as a smoothed, thinned track for the time plot.

    Returns (DataFrame, step_s, window_s): a long-form frame with columns time_s (seconds),
    score (percent, rounded to 0.1, `smoothed_frame_scores` over window_s) and emotion (label), one row per
    emotion every step_s. Smoothing tames the 20 ms flicker and thinning keeps a
    10-minute track light. An utterance result gives an empty frame.
    """

    if result.frame_scores is None or len(result.frame_scores) == 0:
        return pd.DataFrame({"time_s": [], "score": [], "emotion": []}), 0.0, 0.0
    frames = len(result.frame_scores)
    step_s, window_s = track_spacing_s(frames * FRAME_HOP_S, max_points)
    step = max(1, round(step_s / FRAME_HOP_S))
    centres = np.arange(step // 2, frames, step)  # frame index of each point, (P,)
    means = smoothed_frame_scores(result.frame_scores, window_s)[centres]  # (P, K)
    names = [emotion_name(key) for key in result.labels]
    track = pd.DataFrame(
        {
            "time_s": np.repeat(np.round(centres * FRAME_HOP_S + FRAME_HOP_S / 2, 3), len(names)),
            "score": np.round(means * 100, 1).reshape(-1),
            "emotion": np.tile(names, len(centres)),
        }
    )
    return track, step_s, window_s


def segment_min_s(duration_s: float) -> float:
    """Shortest segment in the table: 0.5 s, longer for long clips so it stays about
    SEGMENT_ROWS rows (10 minutes -> 5 s)."""
    return max(SEGMENT_MIN_S, round(duration_s / SEGMENT_ROWS, 1))


def segment_table(result: EmotionResult, max_points: int = TRACK_POINTS):
    """The dominant emotion per segment as a DataFrame with bilingual column names.

    Segments are runs of one leading emotion in the time plot's smoothed track (the same
    window), at least `segment_min_s` long; a segment's confidence is its emotion's mean
    smoothed score over the segment.
    """

    window_s = track_spacing_s(result.duration_s, max_points)[1]
    smoothed = replace(result, frame_scores=smoothed_frame_scores(result.frame_scores, window_s))

    columns = ["开始 Start (s)", "结束 End (s)", "时长 Duration (s)", "情绪 Emotion", "置信度 Confidence"]
    rows = [
        [
            f"{seg['start_s']:.2f}",
            f"{seg['end_s']:.2f}",
            f"{seg['end_s'] - seg['start_s']:.2f}",
            label_for(seg["emotion"]).display,
            f"{seg['confidence']:.1%}",
        ]
        for seg in smoothed.frame_runs(segment_min_s(result.duration_s))
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
        f"average of the 20 ms frame scores, a point every {step_s:g} s · 下表分段取自这条平滑曲线，最短 "
        f"{shortest_segment_s:g} s · the table's segments are runs of one leading emotion in this smoothed track, "
        f"at least {shortest_segment_s:g} s long; a segment's confidence is that emotion's mean score over the "
        "segment, so it differs from the whole-clip confidence above</div>"
    )


def page_json(data: dict, max_items: int = PAGE_JSON_ITEMS) -> dict:
    """The result JSON for the page's viewer, probabilities rounded: long lists (a long clip's frame scores,
    many segments) are replaced by a note, since the browser's JSON tree cannot hold a
    10-minute track; the full data is in the downloadable result.json and the API."""
    shown = dict(data)
    for key in ("frame_scores", "segments"):
        rows = shown.get(key)
        if isinstance(rows, list) and len(rows) > max_items:
            shown[key] = f"{len(rows)} 项 items — 完整内容见 result.json · full list in result.json"
    return _rounded(shown)


def _rounded(value):
    """`value` with every float rounded to PAGE_JSON_DIGITS decimals, in dicts and lists."""
    if isinstance(value, float):
        return round(value, PAGE_JSON_DIGITS)
    if isinstance(value, dict):
        return {key: _rounded(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_rounded(item) for item in value]
    return value
