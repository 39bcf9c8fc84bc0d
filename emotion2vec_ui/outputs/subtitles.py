"""A segment result as files: subtitles (SRT, WebVTT) and a table (CSV).

Each subtitle cue spans one segment and reads like `customer: 😠 愤怒 angry 82%`, so a
recording played in any audio or video player shows who felt what as captions.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from ..results import EmotionResult, Segment, label_for

CSV_FILE = "segments.csv"
SRT_FILE = "segments.srt"
VTT_FILE = "segments.vtt"
SCORE_COLUMN_PREFIX = "score_"  # one CSV column per label: score_angry, score_happy, ...


def cue_text(segment: Segment) -> str:
    """`customer: 😠 愤怒 angry 82%`."""
    label = label_for(segment.emotion)
    return f"{segment.speaker}: {label.emoji} {label.chinese} {segment.emotion} {segment.confidence * 100:.0f}%"


def to_srt(segments: list[Segment]) -> str:
    """SubRip text: numbered cues with `HH:MM:SS,mmm --> HH:MM:SS,mmm` times."""
    cues = [
        f"{n}\n{_timestamp(s.start_s, ',')} --> {_timestamp(s.end_s, ',')}\n{cue_text(s)}\n"
        for n, s in enumerate(segments, start=1)
    ]
    return "\n".join(cues)


def to_vtt(segments: list[Segment]) -> str:
    """WebVTT text: a header, then cues with `HH:MM:SS.mmm --> HH:MM:SS.mmm` times."""
    cues = [f"{_timestamp(s.start_s, '.')} --> {_timestamp(s.end_s, '.')}\n{cue_text(s)}\n" for s in segments]
    return "\n".join(["WEBVTT\n", *cues])


def to_csv(segments: list[Segment], labels: list[str]) -> str:
    """One row per segment: times, speaker, emotion, confidence, flags, then each label's score."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["start_s", "end_s", "speaker", "emotion", "confidence", "short", "mixed_speakers",
                     *(SCORE_COLUMN_PREFIX + label for label in labels)])
    for s in segments:
        writer.writerow([f"{s.start_s:.3f}", f"{s.end_s:.3f}", s.speaker, s.emotion, f"{s.confidence:.6f}",
                         int(s.short), int(s.mixed_speakers), *(f"{s.scores[label]:.6f}" for label in labels)])
    return buffer.getvalue()


def write_segment_files(result: EmotionResult, folder: str | Path) -> dict[str, str]:
    """Write segments.csv, segments.srt and segments.vtt into `folder`: {json key: file name}."""
    folder = Path(folder)
    (folder / CSV_FILE).write_text(to_csv(result.segments, result.labels), encoding="utf-8")
    (folder / SRT_FILE).write_text(to_srt(result.segments), encoding="utf-8")
    (folder / VTT_FILE).write_text(to_vtt(result.segments), encoding="utf-8")
    return {"segments_csv_file": CSV_FILE, "segments_srt_file": SRT_FILE, "segments_vtt_file": VTT_FILE}


def _timestamp(seconds: float, decimal: str) -> str:
    """12.3456 -> `00:00:12,346` (SRT, decimal ",") or `00:00:12.346` (WebVTT, ".")."""
    millis = int(round(seconds * 1000))
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    return f"{hours:02d}:{minutes:02d}:{rest // 1000:02d}{decimal}{rest % 1000:03d}"
