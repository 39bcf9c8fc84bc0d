"""emotion2vec-ui: speech emotion recognition with emotion2vec+ large.

    from emotion2vec_ui import load_model
    model = load_model()
    result = model.predict("clip.wav", granularity="frame")
    result.emotion, result.scores

Importing the package is light: torch and funasr load with the model.
"""

from .audio.decode import ACCEPTED_INPUTS, SAMPLE_RATE, Audio, AudioLimits, load_audio
from .audio.vad import VadSettings
from .engine.recognizer import Recognition, Recognizer, load_model
from .errors import (
    AudioDecodeError,
    AudioError,
    AudioFileNotFoundError,
    AudioLimitError,
    AudioReadError,
    AudioTooShortError,
    CheckpointMismatchError,
    CorruptAudioError,
    Emotion2vecError,
    EmptyAudioError,
    HubUnreachableError,
    InvalidSamplesError,
    ModelLoadError,
    MonoAudioError,
    OptionError,
    OutputWriteError,
    SpeakerOptionError,
    UnsupportedCodecError,
    WindowTooLongError,
)
from .outputs.folders import save_recognition
from .results import EMOTION_LABELS, EmotionResult, label_for

__all__ = [
    "ACCEPTED_INPUTS", "SAMPLE_RATE", "Audio", "AudioLimits", "load_audio",
    "AudioDecodeError", "AudioError", "AudioFileNotFoundError", "AudioLimitError", "AudioTooShortError",
    "CheckpointMismatchError", "CorruptAudioError", "Emotion2vecError", "EmptyAudioError",
    "InvalidSamplesError", "ModelLoadError", "MonoAudioError", "OptionError", "SpeakerOptionError",
    "UnsupportedCodecError", "AudioReadError", "HubUnreachableError", "OutputWriteError", "WindowTooLongError",
    "save_recognition", "Recognition", "Recognizer", "load_model",
    "EMOTION_LABELS", "EmotionResult", "label_for", "VadSettings",
]
