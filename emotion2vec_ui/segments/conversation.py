"""Granularity "segment": who felt what, when.

The speech of a recording is found with the VAD (per channel with speakers="channels"),
attributed to speakers, and each segment's waveform is recognised as an utterance of
its own, all segments batched through `Recognizer.recognize` (length-sorted, padded),
so a segment's scores equal `predict(that_cut, granularity="utterance")`. Silence
and noise between segments are never scored.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from ..audio.decode import SAMPLE_RATE, Audio
from ..audio.vad import VadSettings, detect_speech
from ..errors import SpeakerOptionError
from ..results import EmotionResult, Segment, build_segment_result, counted
from .speakers import diarize

SPEAKER_MODES = ("channels", "auto")  # besides None or "one" (one speaker) and a number of speakers
DEFAULT_SPEAKERS = None  # one speaker, named S1
ONE_SPEAKER = "one"  # the same as None, by name (the page, the API, the command line)
NO_SPEECH_NOTE = "No speech was found in this recording, so there are no segments to score."
SEARCH_SHARE = 0.1  # progress given to finding speech and speakers; the model gets the rest


def check_speakers(speakers) -> str | int | None:
    """Normalise a speaker mode: None or "one" -> None, "channels", "auto", or a positive
    count ("2" -> 2); SpeakerOptionError (a ValueError) for anything else."""
    if speakers is None or speakers == ONE_SPEAKER:
        return None
    if speakers in SPEAKER_MODES:
        return speakers
    if isinstance(speakers, str) and speakers.strip().isdigit():
        speakers = int(speakers)
    if isinstance(speakers, (int, np.integer)) and not isinstance(speakers, bool) and speakers >= 1:
        return int(speakers)
    raise SpeakerOptionError(f'speakers must be "one", "channels" (one speaker per channel), "auto" or a number '
                             f"of speakers such as 2, not {speakers!r}", option="speakers")


def check_speaker_names(names: list[str] | None, speakers: str | int | None) -> list[str] | None:
    """Names, stripped (None when none are given); SpeakerOptionError when a name is empty
    or repeated, or their number cannot fit `speakers` (check_speakers' form): one name for
    one speaker, N for N. For "channels" the recording decides (checked per file), and
    "auto" takes any number."""
    if not names:
        return None
    if isinstance(names, str):
        raise SpeakerOptionError(f"speaker names must be a list such as ['agent', 'customer'], not the text {names!r}",
                                 option="speaker_names")
    names = [str(name).strip() for name in names]
    if not all(names) or len(set(names)) != len(names):
        raise SpeakerOptionError(f"speaker names must be distinct and none empty, not {', '.join(names)!r}",
                                 option="speaker_names")
    expected = 1 if speakers is None else speakers if isinstance(speakers, int) else None
    if expected is not None and len(names) != expected:
        raise SpeakerOptionError(f"{counted(len(names), 'speaker name')} given for {counted(expected, 'speaker')}; "
                                 "give one name per speaker, or none", option="speaker_names")
    return names


def recognize_segments(
    recognizer,
    audio: Audio,
    speakers=DEFAULT_SPEAKERS,
    speaker_names: list[str] | None = None,
    embedding: bool = False,
    *,
    vad: VadSettings | None = None,
    progress: Callable[[float, str], None] | None = None,
) -> EmotionResult:
    """The "segment" result of one decoded input (see the module docstring).

    `speakers`: None (one speaker), "channels" (one per channel; `audio` decoded with
    keep_channels=True), "auto" (count estimated) or a count. `speaker_names` replace the
    default names S1, S2, ... (ch1, ch2, ... for channels) in order of first appearance.
    """
    speakers = check_speakers(speakers)
    speaker_names = check_speaker_names(speaker_names, speakers)  # before any work
    timings = {}
    started = time.perf_counter()
    if progress:
        progress(0.0, "finding speech")
    if speakers == "channels":
        waves = audio.channel_waveforms()  # raises MonoAudioError for one channel
        names = _names(speaker_names, len(waves), "ch", exact=True)
        pieces = [(start, end, c, False) for c, wave in enumerate(waves) for start, end in detect_speech(wave, vad)]
        timings["vad"] = time.perf_counter() - started
    else:
        waves = audio.waveform[None]
        speech = detect_speech(audio.waveform, vad)
        timings["vad"] = time.perf_counter() - started
        if speakers is None or not speech:
            pieces = [(start, end, 0, False) for start, end in speech]
        else:
            if progress:
                progress(SEARCH_SHARE / 2, "finding speakers")
            turns = diarize(audio.waveform, speech, None if speakers == "auto" else speakers)
            pieces = [(t.start_s, t.end_s, t.speaker, t.mixed) for t in turns]
            timings["speakers"] = time.perf_counter() - started - timings["vad"]
        count = 1 if speakers in (None, "auto") else speakers
        found = max((p[2] for p in pieces), default=-1) + 1
        names = _names(speaker_names, count, "S", exact=speakers != "auto", at_least=found)
    bounds = [(int(round(start * SAMPLE_RATE)), int(round(end * SAMPLE_RATE))) for start, end, _, _ in pieces]
    cuts = [
        Audio(waves[speaker if speakers == "channels" else 0][a:b],
              f"{audio.name} {a / SAMPLE_RATE:.2f}-{b / SAMPLE_RATE:.2f} s", SAMPLE_RATE, 1, audio.source_format)
        for (a, b), (_, _, speaker, _) in zip(bounds, pieces)
    ]
    emotion_started = time.perf_counter()
    scaled = (lambda f, text: progress(SEARCH_SHARE + (1 - SEARCH_SHARE) * f, text)) if progress else None
    results = recognizer.recognize(cuts, "utterance", embedding, scaled) if cuts else []
    timings["emotion"] = time.perf_counter() - emotion_started
    segments = [
        Segment(a / SAMPLE_RATE, b / SAMPLE_RATE, names[speaker], r.emotion, r.confidence, r.scores,
                mixed_speakers=mixed, embedding=r.embedding)
        for (a, b), (_, _, speaker, mixed), r in zip(bounds, pieces, results)
    ]
    result = build_segment_result(
        segments, recognizer.labels, audio.duration_s, recognizer.model_name, source=audio.name,
        embedding=embedding, note=None if segments else NO_SPEECH_NOTE,
    )
    result.timings_s = {**timings, "total": time.perf_counter() - started}
    return result


def _names(given: list[str] | None, count: int, prefix: str, exact: bool, at_least: int = 0) -> list[str]:
    """Speaker names: the given ones (already through check_speaker_names), then prefix1,
    prefix2, ... for any speaker beyond them; `exact`: exactly `count` names, if any."""
    given = given or []
    if given and exact and len(given) != count:
        raise SpeakerOptionError(f"{counted(len(given), 'speaker name')} given for {counted(count, 'speaker')}; "
                                 "give one name per speaker")
    total = max(count, at_least, len(given))
    return given + [f"{prefix}{i + 1}" for i in range(len(given), total)]
