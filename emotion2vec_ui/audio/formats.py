"""The audio formats the decoder reads: one list for the page, the CLI, the docs and error messages.

No imports: the CLI's --help and the batch's folder search use it without loading the decoder.
"""

FORMATS = {  # the containers the decoder reads, as people name them -> their file name endings
    "WAV": (".wav",),
    "MP3": (".mp3",),
    "M4A/AAC": (".m4a", ".aac"),
    "FLAC": (".flac",),
    "OGG (Vorbis/Opus)": (".ogg", ".oga", ".opus"),
    "WEBM": (".webm",),
}
AUDIO_SUFFIXES = tuple(suffix for suffixes in FORMATS.values() for suffix in suffixes)
ACCEPTED_FORMATS = ", ".join(list(FORMATS)[:-1]) + " or " + list(FORMATS)[-1]  # "WAV, MP3, ... or WEBM"
CONTAINER_NAMES = {"mov": "M4A/MP4", "matroska": "WEBM/Matroska"}  # FFmpeg's demuxer name -> the one people know
