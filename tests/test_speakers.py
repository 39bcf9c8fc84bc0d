"""Speaker turns from Resemblyzer embeddings: real voices told apart, clustering checked."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from emotion2vec_ui.audio.testdata import voice_like
from emotion2vec_ui.audio.vad import detect_speech
from emotion2vec_ui.segments import voice_encoder
from emotion2vec_ui.segments.speakers import PARTIAL_MIN_COVERAGE, PARTIAL_RATE, cluster, diarize, embed_segments, silhouette

from .speech import dialogue, example_clip, overlap_s

# Resemblyzer 0.1.4's embedding of a quiet voice, voice_like(3.0, seed=7) * 0.01 (its
# VoiceEncoder("cpu").embed_utterance after its normalize_volume(wav, -30, increase_only=True),
# which raises it): the eight largest entries, (index, value).
QUIET = 0.01
RESEMBLYZER_TOP8 = [(100, 0.26898), (224, 0.26347), (178, 0.2541), (158, 0.20793),
                    (246, 0.20454), (150, 0.19114), (111, 0.18381), (146, 0.17638)]


def speaker_accuracy(turns, regions) -> float:
    """Share of the known speech time given to the right speaker (first voice heard = speaker 0)."""
    order = list(dict.fromkeys(who for _, _, who in regions))
    right = sum(overlap_s((t.start_s, t.end_s), r[:2]) for t in turns for r in regions if order.index(r[2]) == t.speaker)
    return right / sum(end - start for start, end, _ in regions)


@pytest.mark.parametrize("num_speakers", [None, 2])
def test_two_voices_told_apart(num_speakers):
    waveform, regions = dialogue()
    turns = diarize(waveform, detect_speech(waveform), num_speakers)
    assert {t.speaker for t in turns} == {0, 1} and turns[0].speaker == 0
    assert speaker_accuracy(turns, regions) >= 0.9


def test_a_voice_change_inside_one_segment_is_split():
    pauses = [0.7, 1.0, 1.3, 0.15, 0.9, 1.1, 0.8, 0.6]  # 0.15 s: lines 3 and 4 form one segment
    waveform, regions = dialogue(pauses)
    segments = detect_speech(waveform)
    assert len(segments) == len(regions) - 1
    turns = diarize(waveform, segments)
    assert len(turns) == len(regions)
    boundary = (regions[2][1] + regions[3][0]) / 2
    assert abs(turns[3].start_s - boundary) < 0.5
    assert speaker_accuracy(turns, regions) >= 0.9


def test_one_voice_stays_one_speaker():
    clip = example_clip()
    silence = np.zeros(16_000, dtype=np.float32)
    waveform = np.concatenate([silence, clip, silence, clip[::-1].copy(), silence, clip])
    turns = diarize(waveform, detect_speech(waveform))
    assert len(turns) >= 3 and {t.speaker for t in turns} == {0}
    alone = diarize(clip, [(0.0, len(clip) / 16_000)])  # one segment: its partial windows are clustered
    assert {t.speaker for t in alone} == {0}


def test_silhouette_matches_scikit_learn():
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    points = np.concatenate([rng.normal(0, 1, (10, 3)), rng.normal(4, 1, (7, 3)), rng.normal(-4, 1, (1, 3))])
    labels = np.array([0] * 10 + [1] * 7 + [2])
    distances = np.linalg.norm(points[:, None] - points[None], axis=-1)
    expected = sklearn_metrics.silhouette_score(distances, labels, metric="precomputed")
    assert silhouette(distances, labels) == pytest.approx(expected, abs=1e-9)


def test_cluster_counts_and_numbers_by_first_appearance():
    rng = np.random.default_rng(1)
    centres = np.eye(4)[:3]
    rows = [1, 1, 0, 2, 0, 1, 2, 2, 0, 1]
    vectors = centres[rows] + 0.05 * rng.standard_normal((len(rows), 4))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    labels = cluster(vectors)
    assert labels.tolist() == [0, 0, 1, 2, 1, 0, 2, 2, 1, 0]
    assert cluster(vectors, 2).max() == 1 and cluster(vectors, 1).tolist() == [0] * len(rows)
    assert cluster(vectors[:1]).tolist() == [0]


@pytest.mark.parametrize("num_speakers", [None, 2])
def test_two_voices_in_a_single_segment_are_told_apart(num_speakers):
    """Two lines with a 0.15 s pause form one speech segment: no second segment to cluster
    with, so the voices are found in its partial windows."""
    waveform, regions = dialogue([0.5, 0.15, 0.5], lines=2)
    segments = detect_speech(waveform)
    assert len(segments) == 1
    turns = diarize(waveform, segments, num_speakers)
    assert [t.speaker for t in turns] == [0, 1]
    assert abs(turns[1].start_s - (regions[0][1] + regions[1][0]) / 2) < 0.5
    assert speaker_accuracy(turns, regions) >= 0.9


@pytest.mark.parametrize("num_speakers", [None, 2])
def test_turns_after_pauses_shorter_than_the_joining_gap(num_speakers):
    """Pauses of 0.4-0.6 s join the seven lines into four segments, each mean blending both
    voices: the voices come from the partial windows, and every turn change is found."""
    waveform, regions = dialogue([0.5, 0.4, 0.5, 0.6, 0.45, 0.55, 0.4, 0.5])
    segments = detect_speech(waveform)
    assert len(segments) < len(regions)
    turns = diarize(waveform, segments, num_speakers)
    changes = [(a[1] + b[0]) / 2 for a, b in zip(regions, regions[1:])]
    assert len(turns) == len(regions)
    assert all(abs(turn.start_s - change) < 0.5 for turn, change in zip(turns[1:], changes))
    assert speaker_accuracy(turns, regions) >= 0.95


def _embed_utterance(wav: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The shipped voice encoder used as Resemblyzer's embed_utterance: (embedding, partials)."""
    wav = voice_encoder.normalize_volume(wav)
    wav_slices, mel_slices = voice_encoder.partial_slices(len(wav), PARTIAL_RATE, PARTIAL_MIN_COVERAGE)
    mel = voice_encoder.mel_spectrogram(np.pad(wav, (0, max(0, wav_slices[-1].stop - len(wav)))))
    partials = voice_encoder.embed_partials(np.stack([mel[s] for s in mel_slices]))
    mean = partials.mean(axis=0)
    return mean / np.linalg.norm(mean), partials


def test_the_voice_encoder_gives_resemblyzers_embedding():
    embedding, partials = _embed_utterance(voice_like(3.0, seed=7)[:, 0] * QUIET)
    assert partials.shape == (3, 256) and np.allclose(np.linalg.norm(partials, axis=1), 1.0, atol=1e-5)
    top = np.argsort(-embedding)[:8]
    assert top.tolist() == [i for i, _ in RESEMBLYZER_TOP8]
    assert embedding[top] == pytest.approx([v for _, v in RESEMBLYZER_TOP8], abs=1e-4)


def test_the_voice_encoder_matches_resemblyzer_where_it_is_installed():
    """Where the resemblyzer package imports (it is no dependency), its VoiceEncoder and the
    shipped encoder agree on real voices, partial window by partial window."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # its scipy.ndimage.morphology import
        resemblyzer = pytest.importorskip("resemblyzer", reason="resemblyzer (optional, for this comparison) does not import")
    reference = resemblyzer.VoiceEncoder("cpu", verbose=False)
    waveform, regions = dialogue([0.5, 0.5, 0.5, 0.5], lines=3)
    clips = [waveform[int(a * 16_000) : int(b * 16_000)] for a, b, _ in regions] + [example_clip(), example_clip() * QUIET]
    embedded = embed_segments(np.concatenate(clips), _bounds([len(c) for c in clips]))
    for clip, ours in zip(clips, embedded):
        wav = resemblyzer.normalize_volume(clip, -30, increase_only=True)
        vector, partials, _ = reference.embed_utterance(wav, return_partials=True, rate=PARTIAL_RATE,
                                                        min_coverage=PARTIAL_MIN_COVERAGE)
        assert ours.partials.shape == partials.shape
        assert (ours.partials * partials).sum(axis=1).min() > 0.9999
        assert float(ours.vector @ vector) > 0.9999


def _bounds(lengths: list[int]) -> list[tuple[float, float]]:
    ends = np.cumsum(lengths) / 16_000
    return list(zip([0.0, *ends[:-1]], ends))
