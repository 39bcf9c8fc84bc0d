"""The package's exception types: catch `Emotion2vecError` to catch them all.

Every message names the input it is about and says what to do about it.
"""


class Emotion2vecError(Exception):
    """Base class of every error this package raises on purpose."""


class AudioError(Emotion2vecError, ValueError):
    """The audio input cannot be used; the message names the input."""


class AudioFileNotFoundError(AudioError, FileNotFoundError):
    """The path does not exist or is not a file."""


class AudioReadError(AudioError, OSError):
    """The file exists but cannot be read (permissions, I/O error)."""


class EmptyAudioError(AudioError):
    """The file or buffer holds zero bytes, or decodes to zero samples."""


class AudioDecodeError(AudioError):
    """The data is not audio in a container the decoder knows."""


class CorruptAudioError(AudioDecodeError):
    """The container is known but its data is truncated or damaged."""


class UnsupportedCodecError(AudioDecodeError):
    """The container holds no audio stream, or one whose codec cannot be decoded."""


class AudioTooShortError(AudioError):
    """Fewer samples than the model's smallest input (400 samples at 16 kHz, 25 ms)."""


class AudioLimitError(AudioError):
    """The input is over a configured limit (file size or duration)."""


class InvalidSamplesError(AudioError):
    """The waveform holds NaN or infinite samples, or has an unusable shape or rate."""


class MonoAudioError(AudioError):
    """One speaker per channel was asked of a recording with a single channel."""


class OptionError(Emotion2vecError, ValueError):
    """A recognition option that is not one of its accepted values (granularity, embedding).

    `option` names the argument at fault ("granularity", "embedding", "speakers",
    "speaker_names"), so a front end can say it in its own terms (a flag, a field)."""

    def __init__(self, message: str, option: str | None = None):
        super().__init__(message)
        self.option = option


class SpeakerOptionError(OptionError):
    """Segment mode's speaker mode or speaker names are not allowed, or do not fit the recording."""


class ModelLoadError(Emotion2vecError, RuntimeError):
    """The checkpoint cannot be found, downloaded or built."""


class HubUnreachableError(ModelLoadError):
    """The model must be downloaded but its hub cannot be reached (no internet)."""


class CheckpointMismatchError(ModelLoadError):
    """The checkpoint's weights do not fit the model its config describes."""


class OutputWriteError(Emotion2vecError, OSError):
    """The output folder cannot be written (permissions, disk full or nearly full)."""


class WindowTooLongError(Emotion2vecError, ValueError):
    """The requested window is longer than the model may see at once (MAX_WINDOW_S)."""
