"""Decoding: every container and sample format to 16 kHz mono float32, and every bad input."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from emotion2vec_ui.audio.decode import MIN_SAMPLES, SAMPLE_RATE, AudioLimits, load_audio
from emotion2vec_ui.audio.testdata import voice_like, write_audio
from emotion2vec_ui.errors import (
    AudioDecodeError,
    AudioFileNotFoundError,
    AudioLimitError,
    AudioTooShortError,
    CorruptAudioError,
    Emotion2vecError,
    EmptyAudioError,
    InvalidSamplesError,
    UnsupportedCodecError,
)

from .conftest import CLIP_SECONDS, FORMAT_CASES

# Codecs with encoder delay/padding (AAC) decode a little longer than the input.
LENGTH_SLACK_S = {"m4a": 0.08}


@pytest.mark.parametrize("case", [f"{f}-{r}-{c}ch" for f, r, c in FORMAT_CASES])
def test_every_format_decodes_to_16k_mono(audio_files, case):
    fmt, rate, channels = case.split("-")[0], int(case.split("-")[1]), int(case.split("-")[2][:-2])
    audio = load_audio(audio_files[case])
    assert audio.waveform.dtype == np.float32 and audio.waveform.ndim == 1
    assert audio.source_channels == channels
    expected_rate = 48_000 if fmt in ("opus", "webm") else rate  # Opus always decodes at 48 kHz
    assert audio.source_rate == expected_rate
    assert abs(audio.duration_s - CLIP_SECONDS) <= LENGTH_SLACK_S.get(fmt, 0.005)
    peak = np.abs(audio.waveform).max()
    assert 0.1 < peak < 1.0  # sound came through at a sane scale
    assert audio.name == str(audio_files[case])
    assert audio.source_format == SOURCE_FORMATS[fmt.split("_")[0]]  # as people name it, for the page's log


SOURCE_FORMATS = {"wav": "WAV", "flac": "FLAC", "mp3": "MP3", "m4a": "M4A/MP4", "ogg": "OGG", "opus": "OGG",
                  "webm": "WEBM/Matroska"}


def test_every_format_case_is_in_the_one_format_list():
    from emotion2vec_ui.audio.formats import ACCEPTED_FORMATS, AUDIO_SUFFIXES
    from emotion2vec_ui.audio.testdata import suffix_for

    assert {suffix_for(fmt) for fmt, _, _ in FORMAT_CASES} <= set(AUDIO_SUFFIXES)
    assert ACCEPTED_FORMATS == "WAV, MP3, M4A/AAC, FLAC, OGG (Vorbis/Opus) or WEBM"


def test_lossless_formats_keep_the_samples(tmp_path):
    """PCM/FLAC at 16 kHz mono must decode to the written samples (to 16-bit precision)."""
    samples = voice_like(1.0, 16_000, 1, seed=7)
    for fmt in ("wav", "flac", "wav_s24", "wav_s32", "wav_f32"):
        path = write_audio(tmp_path / f"x_{fmt}.{fmt.split('_')[0]}", samples, 16_000, fmt)
        decoded = load_audio(path).waveform
        assert np.abs(decoded - samples[:, 0]).max() < 1 / 32768 + 1e-6, fmt


def test_channels_are_averaged(tmp_path):
    left = voice_like(1.0, 16_000, 1, seed=1)[:, 0]
    right = voice_like(1.0, 16_000, 1, seed=2)[:, 0]
    path = tmp_path / "stereo.wav"
    sf.write(path, np.stack([left, right], axis=1), 16_000, subtype="FLOAT")
    decoded = load_audio(path).waveform
    np.testing.assert_allclose(decoded, (left + right) / 2, atol=1e-6)


def test_resampling_keeps_a_tone_in_place():
    """A 1 kHz tone at 44.1 kHz resampled to 16 kHz stays at 1 kHz with its amplitude."""
    rate = 44_100
    t = np.arange(rate * 2) / rate
    audio = load_audio((0.5 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32), rate)
    assert len(audio.waveform) == 2 * SAMPLE_RATE
    spectrum = np.abs(np.fft.rfft(audio.waveform[4000:-4000]))
    freqs = np.fft.rfftfreq(len(audio.waveform) - 8000, 1 / SAMPLE_RATE)
    assert abs(freqs[spectrum.argmax()] - 1000) < 2
    assert abs(np.abs(audio.waveform[4000:-4000]).max() - 0.5) < 0.01


def test_bytes_and_file_give_the_same_waveform(audio_files):
    path = audio_files["mp3-44100-2ch"]
    from_bytes = load_audio(path.read_bytes(), name="upload.mp3")
    assert from_bytes.name == "upload.mp3"
    np.testing.assert_array_equal(from_bytes.waveform, load_audio(path).waveform)


@pytest.mark.parametrize("layout", ["1d", "samples_by_channels", "channels_by_samples", "gradio_tuple"])
def test_numpy_inputs(layout):
    stereo = voice_like(1.0, 22_050, 2, seed=3)  # (N, 2)
    expected = load_audio(stereo.mean(axis=1), 22_050).waveform
    if layout == "1d":
        audio = load_audio(stereo.mean(axis=1), sample_rate=22_050)
    elif layout == "samples_by_channels":
        audio = load_audio((stereo, 22_050))
    elif layout == "channels_by_samples":
        audio = load_audio(stereo.T.copy(), 22_050)
    else:  # Gradio's numpy audio: (rate, int16 array)
        audio = load_audio((22_050, (stereo * 32767).astype(np.int16)))
    assert audio.source_rate == 22_050
    np.testing.assert_allclose(audio.waveform, expected, atol=2e-4)


def test_silence_is_valid(tmp_path):
    path = tmp_path / "silence.wav"
    sf.write(path, np.zeros(SAMPLE_RATE, dtype=np.float32), SAMPLE_RATE)
    assert not load_audio(path).waveform.any()


def test_shortest_valid_input():
    assert len(load_audio(np.zeros(MIN_SAMPLES, np.float32), SAMPLE_RATE).waveform) == MIN_SAMPLES
    with pytest.raises(AudioTooShortError, match="at least 25 ms"):
        load_audio(np.zeros(MIN_SAMPLES - 1, np.float32), SAMPLE_RATE, name="blip")


# -- bad inputs -------------------------------------------------------------------------


def _bad_files(tmp_path, audio_files):
    """{name: (path, expected error)} for files that must be refused."""
    wav = audio_files["wav-44100-2ch"].read_bytes()
    cases = {
        "text.wav": (b"this is a text file, not audio\n" * 20, AudioDecodeError),
        "empty.wav": (b"", EmptyAudioError),
        "truncated.wav": (wav[: len(wav) // 3], CorruptAudioError),
        "header_only.wav": (wav[:44], CorruptAudioError),
        "truncated.flac": (audio_files["flac-48000-6ch"].read_bytes()[:3000], CorruptAudioError),
        "truncated.mp3": (audio_files["mp3-44100-2ch"].read_bytes()[:4000], CorruptAudioError),
        "truncated.m4a": (audio_files["m4a-48000-2ch"].read_bytes()[:3000], CorruptAudioError),
    }
    paths = {}
    for name, (data, error) in cases.items():
        (tmp_path / name).write_bytes(data)
        paths[name] = (tmp_path / name, error)
    return paths


def test_bad_files_get_specific_errors(tmp_path, audio_files):
    for name, (path, error) in _bad_files(tmp_path, audio_files).items():
        with pytest.raises(error) as caught:
            load_audio(path, name=name)
        assert str(caught.value).startswith(name), str(caught.value)
        assert isinstance(caught.value, Emotion2vecError) and isinstance(caught.value, ValueError)


def test_missing_file():
    with pytest.raises(AudioFileNotFoundError, match="no such file"):
        load_audio("/nonexistent/clip.wav")


def test_a_folder_is_named_as_one(tmp_path):
    with pytest.raises(AudioFileNotFoundError, match="a folder, not an audio file.*batch FOLDER"):
        load_audio(tmp_path)


def test_container_without_audio_stream(tmp_path):
    import av

    path = tmp_path / "video_only.mkv"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("ffv1", rate=5)
        stream.width = stream.height = 16
        stream.pix_fmt = "yuv420p"
        for _ in range(3):
            frame = av.VideoFrame.from_ndarray(np.zeros((16, 16, 3), np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    with pytest.raises(UnsupportedCodecError, match="no audio stream"):
        load_audio(path)


def test_non_finite_samples(tmp_path):
    samples = voice_like(1.0)[:, 0]
    samples[500] = np.inf
    path = tmp_path / "inf.wav"
    sf.write(path, samples, SAMPLE_RATE, subtype="FLOAT")
    with pytest.raises(InvalidSamplesError, match="NaN or infinite"):
        load_audio(path)
    with pytest.raises(InvalidSamplesError):
        load_audio(np.full(1000, np.nan, np.float32), SAMPLE_RATE)


def test_rate_outside_range(tmp_path):
    path = tmp_path / "low.wav"
    sf.write(path, voice_like(1.0, 4_000)[:, 0], 4_000)
    with pytest.raises(InvalidSamplesError, match="4000 Hz"):
        load_audio(path)


def test_file_size_limit(audio_files):
    with pytest.raises(AudioLimitError, match="file size limit"):
        load_audio(audio_files["wav-16000-1ch"], limits=AudioLimits(max_file_bytes=1000))


@pytest.mark.parametrize("case", ["wav-16000-1ch", "mp3-44100-2ch", "opus-48000-1ch"])
def test_duration_limit_is_enforced_while_decoding(audio_files, case):
    with pytest.raises(AudioLimitError, match="duration limit"):
        load_audio(audio_files[case], limits=AudioLimits(max_duration_s=1.0))
    assert load_audio(audio_files[case], limits=AudioLimits(max_duration_s=2.5)).duration_s > 1.9


def test_duration_limit_ignores_a_lying_header(tmp_path):
    """A WAV whose header claims 0.5 s but holds 3 s (streamed size unset) is measured by decoding."""
    samples = (voice_like(3.0)[:, 0] * 32767).astype("<i2").tobytes()
    header = bytearray(b"RIFF" + (0xFFFFFFFF).to_bytes(4, "little") + b"WAVEfmt ")
    header += (16).to_bytes(4, "little") + (1).to_bytes(2, "little") + (1).to_bytes(2, "little")
    header += SAMPLE_RATE.to_bytes(4, "little") + (2 * SAMPLE_RATE).to_bytes(4, "little")
    header += (2).to_bytes(2, "little") + (16).to_bytes(2, "little")
    header += b"data" + (0xFFFFFFFF).to_bytes(4, "little")
    path = tmp_path / "streamed.wav"
    path.write_bytes(bytes(header) + samples)
    assert abs(load_audio(path).duration_s - 3.0) < 0.01
    with pytest.raises(AudioLimitError):
        load_audio(path, limits=AudioLimits(max_duration_s=2.0))


def test_the_library_ignores_the_environment(monkeypatch):
    monkeypatch.setenv("E2V_MAX_FILE_MB", "2")
    monkeypatch.setenv("E2V_MAX_DURATION_S", "60")
    assert AudioLimits() == AudioLimits(max_file_bytes=1024 * 2**20, max_duration_s=3 * 3600.0)


CLAIMED_HOURS_PROBE = """
import resource, sys
from emotion2vec_ui import CorruptAudioError, load_audio
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
    load_audio(sys.argv[1])
except CorruptAudioError as e:
    print("refused:", e)
print("grew_mb", (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024)
"""


def test_a_crafted_header_cannot_make_the_decoder_take_hundreds_of_mb(tmp_path):
    """A 1 s FLAC whose STREAMINFO claims 3 hours: refused as truncated, and the buffer sized from
    the claim takes memory only where it was written (peak RSS of a fresh process)."""
    path = tmp_path / "claims_three_hours.flac"
    sf.write(path, (0.1 * np.sin(np.arange(SAMPLE_RATE) * 0.05)).astype(np.float32), SAMPLE_RATE)
    data = bytearray(path.read_bytes())
    assert data[:4] == b"fLaC"  # STREAMINFO's total sample count: the low 36 bits of bytes 18-25
    fields = int.from_bytes(data[18:26], "big")
    fields = (fields & ~((1 << 36) - 1)) | (3 * 3600 * SAMPLE_RATE)
    data[18:26] = fields.to_bytes(8, "big")
    path.write_bytes(bytes(data))
    run = subprocess.run([sys.executable, "-c", CLAIMED_HOURS_PROBE, str(path)], capture_output=True, text=True,
                         timeout=120, check=True)
    assert "refused:" in run.stdout and "promises 10800.00 s but only 1.00 s" in run.stdout, run.stdout
    assert float(run.stdout.split("grew_mb")[1]) < 100, run.stdout


def test_a_tuple_must_be_one_array_and_its_rate(wav_clip):
    from emotion2vec_ui.errors import InvalidSamplesError

    waveform = np.zeros(16_000, dtype=np.float32)
    assert load_audio((waveform, 16_000)).duration_s == load_audio((16_000, waveform)).duration_s == 1.0
    for bad in [(str(wav_clip), str(wav_clip)), (waveform, waveform), (waveform, 16_000, 1), (16_000, 16_000)]:
        with pytest.raises(InvalidSamplesError, match="numpy_array, sample_rate"):
            load_audio(bad)


def test_an_unreadable_file_is_a_read_error(wav_clip, tmp_path):
    import os

    from emotion2vec_ui.errors import AudioReadError

    if os.geteuid() == 0:
        pytest.skip("root reads every file whatever its permissions")
    locked = tmp_path / "locked.wav"
    locked.write_bytes(wav_clip.read_bytes())
    locked.chmod(0)
    with pytest.raises(AudioReadError, match="cannot be read"):
        load_audio(locked)


def test_unsupported_input_type():
    with pytest.raises(AudioDecodeError, match="Cannot read audio from a dict"):
        load_audio({"not": "audio"})
