"""The verdict of a recognised file as every batch row holds it: the web batch's rows and
summary.csv, and the batch command's table, are built from `verdict`."""

from __future__ import annotations

from ..results import EmotionResult

VERDICT_FIELDS = ("duration_s", "emotion", "confidence", "second_emotion", "second_confidence", "scores")


def verdict(result: EmotionResult) -> dict:
    """duration_s (s), emotion and confidence, the runner-up (second_emotion and
    second_confidence, None for a one-label model) and scores {label: probability}."""
    ranked = sorted(result.scores.items(), key=lambda kv: kv[1], reverse=True)
    second = ranked[1] if len(ranked) > 1 else (None, None)
    return {"duration_s": result.duration_s, "emotion": result.emotion, "confidence": result.confidence,
            "second_emotion": second[0], "second_confidence": second[1], "scores": dict(result.scores)}


def no_verdict() -> dict:
    """The verdict fields of a file that failed: all empty."""
    return {**dict.fromkeys(VERDICT_FIELDS), "scores": {}}
