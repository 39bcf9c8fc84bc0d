"""The only writers of output folders: result.json, wav, npy, and the segment files (csv, srt, vtt)."""

from .folders import save_recognition
from .subtitles import write_segment_files

__all__ = ["save_recognition", "write_segment_files"]
