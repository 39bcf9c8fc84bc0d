"""The project's results equal funasr's own `AutoModel.generate` on the same checkpoint and waveform."""

from __future__ import annotations

import numpy as np
import pytest

from emotion2vec_ui import load_audio
from emotion2vec_ui.engine.torch_backend import contained_funasr

TOLERANCE = 1e-5
CASES = ["wav-16000-1ch", "mp3-44100-2ch", "flac-48000-6ch", "m4a-48000-2ch", "ogg-44100-2ch", "webm-48000-2ch"]


@pytest.fixture(scope="module")
def reference(tiny_checkpoint):
    with contained_funasr():
        from funasr import AutoModel

        return AutoModel(model=str(tiny_checkpoint), disable_update=True, device="cpu", disable_pbar=True)


def _generate(reference, waveform, granularity):
    with contained_funasr():
        (out,) = reference.generate(waveform, granularity=granularity, extract_embedding=True, disable_pbar=True)
    return out


@pytest.mark.parametrize("case", CASES)
def test_utterance_matches_funasr(tiny_model, reference, audio_files, case):
    audio = load_audio(audio_files[case])
    expected = _generate(reference, audio.waveform, "utterance")
    result = tiny_model.predict(audio, granularity="utterance", embedding=True)
    assert [label.split("/")[-1].replace("<unk>", "unknown") for label in expected["labels"]] == result.labels
    np.testing.assert_allclose(list(result.scores.values()), expected["scores"], atol=TOLERANCE)
    assert result.embedding.shape == expected["feats"].shape == (64,)
    np.testing.assert_allclose(result.embedding, expected["feats"], atol=TOLERANCE)


@pytest.mark.parametrize("case", CASES[:3])
def test_frame_embedding_matches_funasr(tiny_model, reference, audio_files, case):
    audio = load_audio(audio_files[case])
    expected = _generate(reference, audio.waveform, "frame")
    result = tiny_model.predict(audio, granularity="frame", embedding=True)
    assert result.embedding.shape == expected["feats"].shape
    np.testing.assert_allclose(result.embedding, expected["feats"], atol=TOLERANCE)
    # funasr's frame mode still scores the whole utterance; ours does too, plus a frame track
    np.testing.assert_allclose(list(result.scores.values()), expected["scores"], atol=TOLERANCE)
    assert result.frame_scores.shape == (len(expected["feats"]), len(result.labels))


def test_batched_results_match_funasr(tiny_model, reference, audio_files):
    audios = [load_audio(audio_files[case]) for case in CASES]
    results = tiny_model.recognize(audios, "utterance", embedding=True)
    for audio, result in zip(audios, results):
        expected = _generate(reference, audio.waveform, "utterance")
        np.testing.assert_allclose(list(result.scores.values()), expected["scores"], atol=TOLERANCE)
        np.testing.assert_allclose(result.embedding, expected["feats"], atol=TOLERANCE)


def test_longer_clip_matches_funasr(tiny_model, reference, tmp_path):
    """7 s (349 frames): the conv front end runs in several pieces and must still match."""
    from emotion2vec_ui.audio.testdata import voice_like, write_audio

    audio = load_audio(write_audio(tmp_path / "long.flac", voice_like(7.0, 22_050, 2, seed=5), 22_050, "flac"))
    expected = _generate(reference, audio.waveform, "frame")
    result = tiny_model.predict(audio, granularity="frame", embedding=True)
    assert result.embedding.shape == expected["feats"].shape == (349, 64)
    np.testing.assert_allclose(result.embedding, expected["feats"], atol=TOLERANCE)
    np.testing.assert_allclose(list(result.scores.values()), expected["scores"], atol=TOLERANCE)
