"""The only writers of output folders: result.json, wav, npy, and the segment files (csv, srt, vtt)."""
