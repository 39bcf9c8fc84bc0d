"""Speech segments from Silero VAD on real speech with known pauses."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from emotion2vec_ui.audio.decode import SAMPLE_RATE
from emotion2vec_ui.audio.vad import CHUNK, VadSettings, detect_speech, speech_probabilities, speech_regions

from .speech import DIALOGUE, assemble, example_clip, line

EDGE_TOLERANCE_S = 0.3


def test_segments_match_known_speech_regions():
    waveform, regions = assemble(
        [("low", line("low", "The quarterly report is late again and nobody told me")),
         ("high", line("high", "I am sorry to hear that and I will check right now")),
         ("example", example_clip()),
         ("low", line("low", "Thank you very much"))],
        [1.0, 1.5, 2.0, 0.8, 1.2],
    )
    segments = detect_speech(waveform)
    assert len(segments) == len(regions)
    for (start, end), (true_start, true_end, _) in zip(segments, regions):
        assert abs(start - true_start) <= EDGE_TOLERANCE_S and abs(end - true_end) <= EDGE_TOLERANCE_S


def test_silence_and_noise_give_no_segments():
    rng = np.random.default_rng(0)
    assert detect_speech(np.zeros(5 * SAMPLE_RATE, dtype=np.float32)) == []
    assert detect_speech((0.003 * rng.standard_normal(5 * SAMPLE_RATE)).astype(np.float32)) == []
    assert detect_speech(np.zeros(100, dtype=np.float32)) == []


def test_short_pauses_join_and_long_speech_splits_in_a_pause():
    sentences = ["One two three four five six seven eight nine ten", "The sun is out and the birds are singing"]
    pieces = [(str(i), (line("low" if i % 2 else "high", sentences[i % 2]))) for i in range(8)]
    pause = 0.3  # shorter than the join gap: one run of speech of about 25 s
    waveform, regions = assemble(pieces, [1.0, *[pause] * 7, 1.0])
    settings = VadSettings(max_segment_s=12.0)
    segments = detect_speech(waveform, settings)
    assert len(segments) >= 3
    assert all(end - start <= settings.max_segment_s for start, end in segments)
    assert abs(segments[0][0] - regions[0][0]) <= EDGE_TOLERANCE_S
    assert abs(segments[-1][1] - regions[-1][1]) <= EDGE_TOLERANCE_S
    pauses = [(a[1], b[0]) for a, b in zip(regions, regions[1:])]
    for (_, cut), (next_start, _) in zip(segments, segments[1:]):
        assert cut == next_start  # split pieces of one run touch
        assert any(lo - 0.1 <= cut <= hi + 0.1 for lo, hi in pauses), f"cut at {cut} s is not in a pause"


def test_join_gap_setting_decides_whether_a_pause_splits():
    waveform, regions = assemble([("a", (line("low", "Hello there"))), ("b", (line("low", "General Kenobi")))],
                                 [0.5, 0.9, 0.5])
    assert len(detect_speech(waveform, VadSettings(join_gap_s=1.2))) == 1
    assert len(detect_speech(waveform, VadSettings(join_gap_s=0.5))) == 2


def test_regions_from_a_probability_track():
    probs = np.array([0.1, 0.9, 0.9, 0.4, 0.9, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.95, 0.1])
    waveform = np.zeros(len(probs) * 512, dtype=np.float32)
    settings = VadSettings(min_speech_s=0.03, join_gap_s=0.1, pad_s=0.0)
    # 0.4 stays above threshold - hysteresis: chunks 1-4 are one run; chunk 17 alone is 32 ms
    assert speech_regions(probs, waveform, settings) == [(0.032, 0.16), (0.544, 0.576)]
    assert speech_regions(probs, waveform, VadSettings(min_speech_s=0.1, join_gap_s=0.1, pad_s=0.0)) == [(0.032, 0.16)]


@pytest.mark.parametrize("bad", [dict(threshold=1.5), dict(max_segment_s=0.01), dict(pad_s=-1)])
def test_bad_settings_are_refused(bad):
    with pytest.raises(ValueError):
        VadSettings(**bad)


def test_weights_load_without_warnings(monkeypatch):
    """Reading the packaged network's tensors prints nothing (torch flags TorchScript loading
    as deprecated; the file is only read for its tensors)."""
    from emotion2vec_ui.audio import vad

    monkeypatch.setattr(vad, "_weights", None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        weights = vad._load_weights()
    assert "lstm" in weights
    assert [str(w.message) for w in caught] == []


def test_probabilities_equal_the_packaged_model():
    """The vectorised network gives what silero-vad's own TorchScript model gives, chunk by chunk."""
    silero_vad = pytest.importorskip("silero_vad")
    torch = pytest.importorskip("torch")

    threads = torch.get_num_threads()
    model = silero_vad.load_silero_vad(onnx=False)  # importing silero_vad sets torch to one thread
    torch.set_num_threads(threads)
    waveform, _ = assemble([(voice, line(voice, text)) for voice, text in DIALOGUE[:3]], [0.7, 1.0, 0.4, 0.9])
    expected = model.audio_forward(torch.from_numpy(waveform), SAMPLE_RATE)[0].numpy()
    probs = speech_probabilities(waveform)
    assert probs.shape == expected.shape == (-(-len(waveform) // CHUNK),)
    np.testing.assert_allclose(probs, expected, atol=1e-4)
