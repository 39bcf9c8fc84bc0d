"""Who spoke when: speech segments -> speakers -> turns, each recognised as an utterance."""

from .conversation import recognize_segments

__all__ = ["recognize_segments"]
