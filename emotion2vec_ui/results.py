"""Typed recognition results and the emotion label table (numpy only, no torch).

Labels come from a checkpoint's `tokens.txt`, one per output index, spelled
"中文/english" (e.g. `生气/angry`) with `<unk>` last. Older checkpoint revisions carry
`unuse_*` placeholders, which funasr masks out; so a model may have fewer than 9
usable classes and every score table here is keyed by the checkpoint's own labels.

Granularity "segment" results carry `segments` (one `Segment` per speech segment, in
time order) and `speakers` (a `SpeakerSummary` each); their whole-file scores are the
speech-time-weighted mean of the segments' scores.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

FRAME_HOP_S = 0.02  # seconds between frames: 320 samples at 16 kHz
GRANULARITIES = ("utterance", "frame", "segment")
SHORT_SEGMENT_S = 1.0  # segments shorter than this are flagged: emotion on them is unreliable
STRONGEST_MOMENTS = 3  # top segments kept per speaker and emotion in the summary
NOT_AN_EMOTION = ("neutral", "other", "unknown")  # left out of the strongest moments
FRAME_RUN_MIN_S = 0.5  # shortest run of one emotion in a frame result's JSON "segments"
RANDOM_WEIGHTS_WARNING = (  # a result's "model_warning" when its checkpoint was built with random weights
    "随机权重模型 Random-weight model: this checkpoint was built with random weights (build-checkpoint) for tests "
    "and trials, not trained; its emotions are meaningless."
)


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


def counted(number: int, noun: str) -> str:
    """`number` and `noun`, singular or plural as the count needs: "1 speaker", "2 speakers",
    "0 files" (English nouns that take an -s; every count this package shows is one)."""
    return f"{number} {noun_for(number, noun)}"


def noun_for(number: int, noun: str) -> str:
    """`noun` as a count of `number` needs it: "speaker" for 1, "speakers" otherwise."""
    return noun if number == 1 else f"{noun}s"


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
class Segment:
    """One speech segment of a "segment" result: who spoke when, and with what emotion.

    `scores` are the utterance probabilities of the segment's waveform alone (exactly the
    result of predicting that cut); `embedding` is its (D,) features when asked.
    """

    start_s: float
    end_s: float
    speaker: str
    emotion: str
    confidence: float
    scores: dict[str, float]
    mixed_speakers: bool = False  # may hold a second voice too briefly to split off
    embedding: np.ndarray | None = field(default=None, repr=False)

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s

    @property
    def short(self) -> bool:
        """Shorter than SHORT_SEGMENT_S: read its emotion with care."""
        return self.duration_s < SHORT_SEGMENT_S

    @property
    def display(self) -> str:
        return label_for(self.emotion).display

    def to_dict(self) -> dict:
        return {
            "start_s": round(self.start_s, 3),
            "end_s": round(self.end_s, 3),
            "speaker": self.speaker,
            "emotion": self.emotion,
            "emotion_display": self.display,
            "confidence": self.confidence,
            "scores": self.scores,
            "short": self.short,
            "mixed_speakers": self.mixed_speakers,
        }


@dataclass
class SpeakerSummary:
    """What one speaker's segments add up to.

    `emotion_shares`: the fraction of the speaker's speech time spent in segments of each
    emotion (sums to 1); `strongest`: for each emotion that is not neutral, other or
    unknown, up to STRONGEST_MOMENTS of its segments, most confident first.
    """

    speaker: str
    speech_s: float
    num_segments: int
    emotion_shares: dict[str, float]
    dominant_emotion: str
    strongest: dict[str, list[dict]]

    def to_dict(self) -> dict:
        return {
            "speaker": self.speaker,
            "speech_s": round(self.speech_s, 3),
            "num_segments": self.num_segments,
            "emotion_shares": {key: round(value, 6) for key, value in self.emotion_shares.items()},
            "dominant_emotion": self.dominant_emotion,
            "dominant_emotion_display": label_for(self.dominant_emotion).display,
            "strongest": self.strongest,
        }


@dataclass
class EmotionResult:
    """The emotion of one audio input.

    `scores` are utterance-level probabilities over `labels` (they sum to 1) in both
    granularities. Frame mode adds `frame_scores` (T, K) — the head applied to each
    20 ms frame's features, softmaxed — and `frame_times` (T,), the start of each frame
    in seconds. `embedding` is (D,) for "utterance" and (T, D) for "frame" when asked,
    else None (D = 1024 for plus_large). Segment mode fills `segments`, `speakers` and
    `timings_s` ({"vad", "speakers", "emotion"} seconds), its `embedding` is (S, D) one
    row per segment, and `note` says when no speech was found. `warnings` say what the
    result may suffer from: a clip under 1 s, a nearly silent one (audio.clip_warnings).
    `random_weights` is set when the model's checkpoint was built with random weights
    (build-checkpoint): then its emotions are meaningless, and `to_dict` says so.
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
    segments: list[Segment] = field(default_factory=list)
    speakers: list[SpeakerSummary] = field(default_factory=list)
    timings_s: dict[str, float] = field(default_factory=dict)
    note: str | None = None
    warnings: list[str] = field(default_factory=list)
    random_weights: bool = False

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

    def frame_runs(self, min_duration_s: float = 0.0) -> list[dict]:
        """Runs of frames sharing one dominant emotion: [{start_s, end_s, emotion, confidence}].

        Runs shorter than `min_duration_s` are merged into the run before them, so a
        long recording reads as a few segments rather than thousands of flickers. Each run
        is then labelled by its mean scores, and neighbours that end up with the same label
        are joined (and labelled again) until no two neighbours share one.
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
        while True:  # ends: every pass but the last joins at least two runs
            means = [self.frame_scores[start:end].mean(axis=0) for start, end, _ in runs]  # (K,) each
            for run, mean_scores in zip(runs, means):
                run[2] = int(mean_scores.argmax())
            joined = runs[:1]
            for start, end, label in runs[1:]:
                if joined[-1][2] == label:
                    joined[-1][1] = end
                else:
                    joined.append([start, end, label])
            if len(joined) == len(runs):
                break
            runs = joined
        labels = self.labels
        segments = []
        for (start, end, top), mean_scores in zip(runs, means):
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
        if self.random_weights:  # only then: a trained model's results have neither field
            data["random_weights"] = True
            data["model_warning"] = RANDOM_WEIGHTS_WARNING
        if self.embedding is not None:
            data["embedding_shape"] = list(self.embedding.shape)
        if self.frame_scores is not None:
            data["frame_hop_s"] = FRAME_HOP_S
            data["num_frames"] = int(len(self.frame_scores))
            data["frame_labels"] = self.labels
            data["frame_scores"] = np.round(self.frame_scores, 6).tolist()
            data["segments"] = self.frame_runs(min_duration_s=FRAME_RUN_MIN_S)
        if self.granularity == "segment":
            data["num_segments"] = len(self.segments)
            data["segments"] = [segment.to_dict() for segment in self.segments]
            data["speakers"] = [summary.to_dict() for summary in self.speakers]
            data["timings_s"] = {key: round(value, 3) for key, value in self.timings_s.items()}
        if self.note:
            data["note"] = self.note
        if self.warnings:
            data["warnings"] = self.warnings
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


def build_segment_result(
    segments: list[Segment],
    labels: list[str],
    duration_s: float,
    model: str,
    source: str | None = None,
    embedding: bool = False,
    note: str | None = None,
) -> EmotionResult:
    """A "segment" result: whole-file scores are the speech-time-weighted mean of the segments'.

    With no segments the scores are all 0 and the emotion "unknown"; `note` says why.
    """
    segments = sorted(segments, key=lambda s: (s.start_s, s.speaker))
    weights = np.array([s.duration_s for s in segments])
    table = np.array([[s.scores[label] for label in labels] for s in segments]).reshape(len(segments), len(labels))
    mean = weights @ table / weights.sum() if len(segments) else np.zeros(len(labels))
    result = build_result(mean, labels, "segment", duration_s, model, source=source)
    if not segments:
        result.emotion, result.confidence = "unknown", 0.0
    if embedding and segments:
        result.embedding = np.stack([s.embedding for s in segments])
    result.segments = segments
    result.speakers = summarize_speakers(segments, labels)
    result.note = note
    return result


def summarize_speakers(segments: list[Segment], labels: list[str]) -> list[SpeakerSummary]:
    """One SpeakerSummary per speaker, in order of first appearance."""
    names = list(dict.fromkeys(s.speaker for s in sorted(segments, key=lambda s: s.start_s)))
    summaries = []
    for name in names:
        own = [s for s in segments if s.speaker == name]
        speech_s = sum(s.duration_s for s in own)
        shares = {label: sum(s.duration_s for s in own if s.emotion == label) / speech_s for label in labels}
        strongest = {}
        for label in labels:
            if label in NOT_AN_EMOTION:
                continue
            top = sorted((s for s in own if s.emotion == label), key=lambda s: -s.confidence)[:STRONGEST_MOMENTS]
            if top:
                strongest[label] = [
                    {"start_s": round(s.start_s, 3), "end_s": round(s.end_s, 3), "confidence": s.confidence}
                    for s in top
                ]
        summaries.append(
            SpeakerSummary(name, speech_s, len(own), shares, max(shares, key=shares.get), strongest)
        )
    return summaries
