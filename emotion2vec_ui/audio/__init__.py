"""Audio in: decode any input to 16 kHz mono float32; formats; voice activity (VAD); test signals."""

from .decode import ACCEPTED_INPUTS, SAMPLE_RATE, Audio, AudioLimits, load_audio
from .vad import VadSettings, detect_speech

__all__ = ["ACCEPTED_INPUTS", "SAMPLE_RATE", "Audio", "AudioLimits", "load_audio", "VadSettings", "detect_speech"]
