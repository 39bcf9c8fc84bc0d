"""Typed recognition results and the emotion label table (numpy only, no torch).

Labels come from a checkpoint's `tokens.txt`, one per output index, spelled
"中文/english" (e.g. `生气/angry`) with `<unk>` last. Older checkpoint revisions carry
`unuse_*` placeholders, which funasr masks out; so a model may have fewer than 9
usable classes and every score table here is keyed by the checkpoint's own labels.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

FRAME_HOP_S = 0.02  # seconds between frames: 320 samples at 16 kHz
GRANULARITIES = ("utterance", "frame")


@dataclass(frozen=True)
class EmotionLabel:
    """How one emotion is named and shown."""

    key: str  # English key used in results: "happy"
    chinese: str  # name on the page: "快乐"
    english: str  # name on the page: "Happy"
    emoji: str

    @property
    def display(self) -> str:
        """Bilingual name for people, Chinese first: "😊 快乐 (Happy)"."""
        return f"{self.emoji} {self.chinese} ({self.english})"


EMOTION_LABELS = {
    label.key: label
    for label in (
        EmotionLabel("angry", "愤怒", "Angry", "😠"),
        EmotionLabel("disgusted", "厌恶", "Disgusted", "🤢"),
        EmotionLabel("fearful", "恐惧", "Fearful", "😨"),
        EmotionLabel("happy", "快乐", "Happy", "😊"),
        EmotionLabel("neutral", "中性", "Neutral", "😐"),
        EmotionLabel("other", "其他", "Other", "🤔"),
        EmotionLabel("sad", "悲伤", "Sad", "😢"),
        EmotionLabel("surprised", "惊讶", "Surprised", "😲"),
        EmotionLabel("unknown", "未知", "Unknown", "❓"),
    )
}
UNKNOWN_TOKEN = "<unk>"
MASKED_TOKEN_PREFIX = "unuse"  # funasr's marker for a class the checkpoint does not use


def label_for(key: str) -> EmotionLabel:
    """The display entry of an emotion key; unfamiliar keys are shown as they are."""
    return EMOTION_LABELS.get(key) or EmotionLabel(key, key, key.capitalize(), "•")


def token_to_key(token: str) -> str:
    """`生气/angry` -> `angry`, `<unk>` -> `unknown`, `happy` -> `happy`."""
    token = token.strip()
    if token == UNKNOWN_TOKEN:
        return "unknown"
    return token.rsplit("/", 1)[-1].strip().lower()


def usable_label_indices(tokens: list[str]) -> list[int]:
    """Output indices of the classes the checkpoint uses (funasr masks `unuse*`)."""
    return [i for i, token in enumerate(tokens) if not token.startswith(MASKED_TOKEN_PREFIX)]


@dataclass
class EmotionResult:
    """The emotion of one audio input.

    `scores` are utterance-level probabilities over `labels` (they sum to 1) in both
    granularities. Frame mode adds `frame_scores` (T, K) — the head applied to each
    20 ms frame's features, softmaxed — and `frame_times` (T,), the start of each frame
    in seconds. `embedding` is (D,) for "utterance" and (T, D) for "frame" when asked,
    else None (D = 1024 for plus_large).
    """

    emotion: str
    confidence: float
    scores: dict[str, float]
    granularity: str
    duration_s: float
    model: str
    source: str | None = None
    embedding: np.ndarray | None = field(default=None, repr=False)
    frame_scores: np.ndarray | None = field(default=None, repr=False)
    frame_times: np.ndarray | None = field(default=None, repr=False)

    @property
    def labels(self) -> list[str]:
        return list(self.scores)

    @property
    def display(self) -> str:
        """"😊 快乐 (Happy)" for the winning emotion."""
        return label_for(self.emotion).display

    @property
    def frame_emotions(self) -> list[str] | None:
        """The most likely emotion of each frame (frame mode only)."""
        if self.frame_scores is None:
            return None
        labels = self.labels
        return [labels[i] for i in self.frame_scores.argmax(axis=1)]

    def segments(self, min_duration_s: float = 0.0) -> list[dict]:
        """Runs of frames sharing one dominant emotion: [{start_s, end_s, emotion, confidence}].

        Runs shorter than `min_duration_s` are merged into the run before them, so a
        long recording reads as a few segments rather than thousands of flickers.
        """
        if self.frame_scores is None or len(self.frame_scores) == 0:
            return []
        winners = self.frame_scores.argmax(axis=1)
        change = np.flatnonzero(np.diff(winners)) + 1
        bounds = [0, *change.tolist(), len(winners)]
        runs: list[list[int]] = []  # [start_frame, end_frame, label_index]
        for start, end in zip(bounds[:-1], bounds[1:]):
            label = int(winners[start])
            if runs and (runs[-1][2] == label or (end - start) * FRAME_HOP_S < min_duration_s):
                runs[-1][1] = end
            else:
                runs.append([start, end, label])
        labels = self.labels
        segments = []
        for start, end, _ in runs:
            mean_scores = self.frame_scores[start:end].mean(axis=0)
            top = int(mean_scores.argmax())
            segments.append(
                {
                    "start_s": round(start * FRAME_HOP_S, 3),
                    "end_s": round(end * FRAME_HOP_S, 3),
                    "emotion": labels[top],
                    "confidence": float(mean_scores[top]),
                }
            )
        return segments

    def to_dict(self) -> dict:
        """JSON-ready fields (the embedding is saved separately as .npy)."""
        data = {
            "emotion": self.emotion,
            "emotion_display": self.display,
            "confidence": self.confidence,
            "scores": self.scores,
            "granularity": self.granularity,
            "duration_s": round(self.duration_s, 4),
            "model": self.model,
            "input": self.source,
        }
        if self.embedding is not None:
            data["embedding_shape"] = list(self.embedding.shape)
        if self.frame_scores is not None:
            data["frame_hop_s"] = FRAME_HOP_S
            data["num_frames"] = int(len(self.frame_scores))
            data["frame_labels"] = self.labels
            data["frame_scores"] = np.round(self.frame_scores, 6).tolist()
            data["segments"] = self.segments(min_duration_s=0.5)
        return data


def build_result(
    utterance_probs: np.ndarray,
    labels: list[str],
    granularity: str,
    duration_s: float,
    model: str,
    source: str | None = None,
    embedding: np.ndarray | None = None,
    frame_probs: np.ndarray | None = None,
) -> EmotionResult:
    """Assemble an EmotionResult from probabilities over `labels`: (K,) and optional (T, K)."""
    top = int(np.argmax(utterance_probs))
    frame_times = None
    if frame_probs is not None:
        frame_times = np.arange(len(frame_probs), dtype=np.float64) * FRAME_HOP_S
    return EmotionResult(
        emotion=labels[top],
        confidence=float(utterance_probs[top]),
        scores={label: float(p) for label, p in zip(labels, utterance_probs)},
        granularity=granularity,
        duration_s=duration_s,
        model=model,
        source=source,
        embedding=embedding,
        frame_scores=frame_probs,
        frame_times=frame_times,
    )
