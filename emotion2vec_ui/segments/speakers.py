"""Who speaks when: speaker embeddings of speech segments, clustered into speakers.

Each segment is embedded with Resemblyzer's pretrained voice encoder (voice_encoder.py;
its weights ship in this package): (256,) unit vectors, one per 1.6 s partial window at
1.3 windows a second, averaged per segment. Segments are grouped by average-linkage clustering on cosine
distance; with the number of speakers unknown, one speaker is kept when even the two
most different groups are close, otherwise the count with the best silhouette wins.
The speakers' voices (the centroids that turns are matched to) then come from clustering
the partial windows into that many groups, since a segment's mean blends every voice in
it; when the segments' means look like one voice (or there are fewer segments than
speakers asked for), the partial windows decide the count too, as one segment may hold a
whole exchange.
A segment whose partial windows follow two speakers in turn is split where the voice
changes (in the quietest 160 ms near the middles of the last window of one voice and the
first of the next); a turn is flagged when a window within it sounds like another
speaker, too briefly to split.
torch and the encoder load on first use only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..audio.decode import SAMPLE_RATE
from . import voice_encoder

PARTIAL_RATE = 1.3  # partial windows per second (Resemblyzer's default)
PARTIAL_MIN_COVERAGE = 0.75  # a last partial window needs this much real audio
MAX_SPEAKERS = 8  # most speakers "auto" looks for
SAME_SPEAKER_DISTANCE = 0.3  # cosine distance: groups closer than this are one speaker
MIN_RUN_PARTIALS = 2  # a voice change is split only when both sides hold this many partials
MIN_SPEAKER_PARTIALS = 3  # with the count unknown, a speaker found in the partial windows needs this many
MIN_PIECE_S = 0.5  # no split leaves a piece shorter than this
QUIET_CHUNK = 256  # samples: the resolution of the quietest-point search (16 ms)
QUIET_SPAN = 10  # chunks: a voice change is cut in the quietest 160 ms, a pause rather than a stop consonant
CHANGE_MARGIN_SHARE = 0.25  # of a partial window: how far past the middles the search for the cut reaches


@dataclass
class Turn:
    """A stretch of speech by one speaker; `speaker` counts from 0 in order of first appearance."""

    start_s: float
    end_s: float
    speaker: int
    mixed: bool = False  # its partial windows sound like more than one speaker, too briefly to split


@dataclass
class _Embedded:
    """A segment's embedding (256,) and its partial windows': (P, 256) and their starts in samples."""

    start: int
    stop: int
    vector: np.ndarray
    partials: np.ndarray
    partial_starts: np.ndarray


def diarize(waveform: np.ndarray, segments: list[tuple[float, float]], num_speakers: int | None = None) -> list[Turn]:
    """Speaker turns of a (N,) float32 16 kHz waveform's speech `segments` [(start_s, end_s)].

    `num_speakers` fixes the count; None estimates it (1 to MAX_SPEAKERS). Turns come in
    time order; a segment may come back split in two or more turns.
    """
    if not segments:
        return []
    embedded = embed_segments(waveform, segments)
    vectors = np.stack([e.vector for e in embedded])
    labels = cluster(vectors, num_speakers)
    count = int(labels.max()) + 1
    if count < (num_speakers or 2):
        count = num_speakers  # one voice by the segments' means, or fewer segments than speakers
    if count is None or count > 1:
        # the voices themselves come from the partial windows (a segment's mean blends every voice
        # in it); each segment then gets its nearest voice, and is split where the voice changes
        partials = np.concatenate([e.partials for e in embedded])
        voices = cluster(partials, count)
        if count is None and np.bincount(voices).min() < MIN_SPEAKER_PARTIALS:
            voices = np.zeros_like(voices)  # a few odd windows are not a speaker
        centroids = _centroids(partials, voices)
        labels = (vectors @ centroids.T).argmax(axis=1)
    else:
        centroids = _centroids(vectors, labels)
    turns = []
    for item, label in zip(embedded, labels):
        turns.extend(_split_on_change(item, int(label), centroids, waveform))
    return _renumber(turns)


def embed_segments(waveform: np.ndarray, segments: list[tuple[float, float]]) -> list[_Embedded]:
    """Voice embeddings of each segment, all partial windows run in shared batches."""
    items, mels = [], []
    for start_s, end_s in segments:
        start, stop = int(round(start_s * SAMPLE_RATE)), int(round(end_s * SAMPLE_RATE))
        wav = voice_encoder.normalize_volume(waveform[start:stop])
        wav_slices, mel_slices = voice_encoder.partial_slices(len(wav), PARTIAL_RATE, PARTIAL_MIN_COVERAGE)
        wav = np.pad(wav, (0, max(0, wav_slices[-1].stop - len(wav))))
        mel = voice_encoder.mel_spectrogram(wav)
        mels.extend(mel[s] for s in mel_slices)
        items.append((start, stop, np.array([s.start for s in wav_slices])))
    partials = voice_encoder.embed_partials(np.stack(mels))
    embedded, first = [], 0
    for start, stop, starts in items:
        own = partials[first : first + len(starts)]
        first += len(starts)
        embedded.append(_Embedded(start, stop, _unit(own.mean(axis=0)), own, starts))
    return embedded


def cluster(vectors: np.ndarray, num_speakers: int | None = None) -> np.ndarray:
    """(S, E) unit vectors -> (S,) speaker index per row, numbered in order of first appearance."""
    from scipy.cluster.hierarchy import fcluster, linkage  # heavy: scipy loads when speakers are clustered

    count = len(vectors)
    if count == 1 or num_speakers == 1:
        return np.zeros(count, dtype=int)
    tree = linkage(vectors.astype(np.float64), method="average", metric="cosine")
    if num_speakers is not None:
        k = min(num_speakers, count)
    elif tree[-1, 2] < SAME_SPEAKER_DISTANCE:
        k = 1
    elif count <= 3:
        k = int(fcluster(tree, SAME_SPEAKER_DISTANCE, criterion="distance").max())
    else:
        distances = _cosine_distances(vectors)
        candidates = range(2, min(MAX_SPEAKERS, count - 1) + 1)
        k = max(candidates, key=lambda n: silhouette(distances, fcluster(tree, n, criterion="maxclust")))
    labels = fcluster(tree, k, criterion="maxclust") if k > 1 else np.zeros(count, dtype=int)
    return _first_appearance(np.asarray(labels))


def _centroids(vectors: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """(K, E) unit mean vector of each of the K labels 0..K-1 of (S, E) `vectors`."""
    return _unit(np.stack([vectors[labels == k].mean(axis=0) for k in range(labels.max() + 1)]))


def silhouette(distances: np.ndarray, labels: np.ndarray) -> float:
    """Mean silhouette of a clustering from its (S, S) distance matrix; singletons score 0."""
    groups = np.unique(labels)
    if len(groups) < 2:
        return 0.0
    members = labels[None, :] == groups[:, None]  # (G, S)
    sums = distances @ members.T  # (S, G) summed distance to each group
    sizes = members.sum(axis=1)
    own = np.searchsorted(groups, labels)
    own_size = sizes[own]
    inside = sums[np.arange(len(labels)), own] / np.maximum(own_size - 1, 1)
    to_others = np.where(members.T, np.inf, sums / sizes)  # members.T (S, G): i is in group g
    nearest = to_others.min(axis=1)
    scores = np.where(own_size > 1, (nearest - inside) / np.maximum(np.maximum(nearest, inside), 1e-12), 0.0)
    return float(scores.mean())


def _split_on_change(item: _Embedded, label: int, centroids: np.ndarray, waveform: np.ndarray) -> list[Turn]:
    """One segment as turns: split where its partial windows move to another speaker's centroid.
    A turn is flagged `mixed` when a window within it (give or take the margin) sounds like
    another speaker."""
    whole = Turn(item.start / SAMPLE_RATE, item.stop / SAMPLE_RATE, label)
    if len(centroids) < 2:
        return [whole]
    nearest = (item.partials @ centroids.T).argmax(axis=1)
    runs = _runs(nearest)  # [(first partial, end partial, speaker)]
    long_runs = [run for run in runs if run[1] - run[0] >= MIN_RUN_PARTIALS]
    merged: list[list[int]] = []
    for first, end, speaker in long_runs:
        if merged and merged[-1][2] == speaker:
            merged[-1][1] = end
        else:
            merged.append([first, end, speaker])
    if len(merged) < 2:
        whole.mixed = len({speaker for _, _, speaker in runs}) > 1
        return [whole]
    window = voice_encoder.PARTIAL_SAMPLES
    margin = int(window * CHANGE_MARGIN_SHARE)
    cuts = [item.start]
    for (_, end_a, _), (first_b, _, _) in zip(merged, merged[1:]):
        # the last window that sounds like the first voice holds more of it, and the first
        # window of the next more of the next: the change lies near or between their middles
        lo = item.start + int(item.partial_starts[end_a - 1]) + window // 2 - margin
        hi = item.start + int(item.partial_starts[first_b]) + window // 2 + margin
        cuts.append(_quietest(waveform, max(lo, cuts[-1]), hi, item.stop))
    cuts.append(item.stop)
    pieces: list[list[int]] = []
    for a, b, (_, _, speaker) in zip(cuts, cuts[1:], merged):
        if pieces and b - a < MIN_PIECE_S * SAMPLE_RATE:  # too short: joins the piece before
            pieces[-1][1] = b
        elif pieces and pieces[-1][1] - pieces[-1][0] < MIN_PIECE_S * SAMPLE_RATE:  # the one before joins it
            pieces[-1][1:] = [b, speaker]
        else:
            pieces.append([a, b, speaker])
    starts = item.start + item.partial_starts
    return [Turn(a / SAMPLE_RATE, b / SAMPLE_RATE, speaker,
                 mixed=bool((nearest[(starts >= a - margin) & (starts + window <= b + margin)] != speaker).any()))
            for a, b, speaker in pieces]


def _quietest(waveform: np.ndarray, lo: int, hi: int, limit: int) -> int:
    """Middle of the quietest QUIET_SPAN chunks within [lo, hi) (clipped to the waveform and `limit`)."""
    lo, hi = max(lo, 0), min(hi, limit, len(waveform))
    count = (hi - lo) // QUIET_CHUNK
    if count < QUIET_SPAN:
        return (lo + hi) // 2
    energy = np.square(waveform[lo : lo + count * QUIET_CHUNK].reshape(count, QUIET_CHUNK)).mean(axis=1)
    spans = np.convolve(energy, np.ones(QUIET_SPAN), mode="valid")  # (count - QUIET_SPAN + 1,)
    return lo + (int(np.argmin(spans)) * QUIET_CHUNK + QUIET_SPAN * QUIET_CHUNK // 2)


def _runs(values: np.ndarray) -> list[tuple[int, int, int]]:
    """[(start, end, value)] of consecutive equal values."""
    change = np.flatnonzero(np.diff(values)) + 1
    bounds = [0, *change.tolist(), len(values)]
    return [(a, b, int(values[a])) for a, b in zip(bounds[:-1], bounds[1:])]


def _renumber(turns: list[Turn]) -> list[Turn]:
    """Speakers numbered 0, 1, ... in order of their first turn."""
    order: dict[int, int] = {}
    for turn in sorted(turns, key=lambda t: t.start_s):
        order.setdefault(turn.speaker, len(order))
    for turn in turns:
        turn.speaker = order[turn.speaker]
    return sorted(turns, key=lambda t: t.start_s)


def _first_appearance(labels: np.ndarray) -> np.ndarray:
    _, first = np.unique(labels, return_index=True)
    order = {labels[i]: n for n, i in enumerate(sorted(first))}
    return np.array([order[v] for v in labels], dtype=int)


def _cosine_distances(vectors: np.ndarray) -> np.ndarray:
    unit = _unit(vectors.astype(np.float64))
    return np.clip(1.0 - unit @ unit.T, 0.0, 2.0)


def _unit(vectors: np.ndarray) -> np.ndarray:
    return vectors / np.maximum(np.linalg.norm(vectors, axis=-1, keepdims=True), 1e-12)
