"""Predictions: utterance and frame results, windows for long audio, batches, errors."""

from __future__ import annotations

import numpy as np
import pytest

from emotion2vec_ui import AudioDecodeError, Recognizer, load_audio
from emotion2vec_ui.engine.backend import MAX_WINDOW_S
from emotion2vec_ui.engine.recognizer import plan_windows
from emotion2vec_ui.results import build_result

from .conftest import random_speechlike

HOP, FIELD = 320, 400


def _frames(n: int) -> int:
    return (n - FIELD) // HOP + 1


@pytest.mark.parametrize("num_samples", [400, 16_000, 480_000, 480_400, 1_000_000, 9_600_000, 9_600_123])
@pytest.mark.parametrize("window_frames, context_frames", [(1499, 100), (300, 50), (11, 5)])
def test_windows_tile_every_frame_once(num_samples, window_frames, context_frames):
    windows = plan_windows(num_samples, HOP, FIELD, window_frames, context_frames)
    covered = []
    for i, w in enumerate(windows):
        assert w.start % HOP == 0 and w.stop <= num_samples
        frames_in_window = _frames(w.stop - w.start)
        assert frames_in_window <= window_frames
        assert 0 <= w.keep_from < w.keep_to <= frames_in_window
        if i > 0:
            assert w.keep_from >= context_frames  # left context before every cut
        if i < len(windows) - 1:
            assert frames_in_window - w.keep_to >= context_frames  # right context too
        first = w.start // HOP
        covered.extend(range(first + w.keep_from, first + w.keep_to))
    assert covered == list(range(_frames(num_samples)))


def test_utterance_result(tiny_model, wav_clip):
    result = tiny_model.predict(wav_clip)
    assert result.granularity == "utterance" and result.emotion in tiny_model.labels
    assert list(result.scores) == tiny_model.labels
    assert abs(sum(result.scores.values()) - 1) < 1e-9
    assert result.confidence == max(result.scores.values()) == result.scores[result.emotion]
    assert result.embedding is None and result.frame_scores is None
    assert result.source == str(wav_clip) and abs(result.duration_s - 3.0) < 1e-3
    with_embedding = tiny_model.predict(wav_clip, embedding=True)
    assert with_embedding.embedding.shape == (64,) and with_embedding.scores == result.scores


def test_frame_result(tiny_model, wav_clip):
    result = tiny_model.predict(wav_clip, granularity="frame", embedding=True)
    frames = _frames(3 * 16_000)
    assert result.frame_scores.shape == (frames, len(tiny_model.labels))
    np.testing.assert_allclose(result.frame_scores.sum(axis=1), 1, atol=1e-9)
    np.testing.assert_allclose(result.frame_times[:3], [0.0, 0.02, 0.04])
    assert result.embedding.shape == (frames, 64)
    assert result.scores == pytest.approx(tiny_model.predict(wav_clip).scores, abs=1e-9)
    segments = result.frame_runs()
    assert segments[0]["start_s"] == 0 and segments[-1]["end_s"] == pytest.approx(frames * 0.02)
    assert all(a["end_s"] == b["start_s"] for a, b in zip(segments, segments[1:]))


def test_frame_runs_never_list_two_neighbours_with_one_emotion():
    """A short burst merged into the run before it can turn that run's mean to the emotion of
    the run before: the two are then one segment, not two neighbours with the same label."""
    labels = ["angry", "sad", "happy"]
    angry, barely_sad, burst = [0.8, 0.1, 0.1], [0.39, 0.40, 0.21], [1.0, 0.0, 0.0]
    frames = np.array([angry] * 30 + [barely_sad] * 30 + [burst] * 3 + [[0.1, 0.1, 0.8]] * 40)
    result = build_result(frames.mean(axis=0), labels, "frame", len(frames) * 0.02, "m", frame_probs=frames)
    runs = result.frame_runs(min_duration_s=0.5)
    assert [(r["start_s"], r["end_s"], r["emotion"]) for r in runs] == [(0.0, 1.26, "angry"), (1.26, 2.06, "happy")]
    assert runs[0]["confidence"] == pytest.approx(np.mean([row[0] for row in frames[:63]]))
    assert all(a["emotion"] != b["emotion"] for a, b in zip(runs, runs[1:]))


def test_frame_emotions_vary_over_time(tiny_model):
    """Real per-frame scores: a clip of two different halves does not score flat."""
    two_halves = np.concatenate([random_speechlike(2.0, seed=1), 0.02 * random_speechlike(2.0, seed=9) ** 3])
    result = tiny_model.predict((two_halves, 16_000), granularity="frame")
    first, second = result.frame_scores[:80].mean(axis=0), result.frame_scores[-80:].mean(axis=0)
    assert np.abs(first - second).max() > 0.01


def test_predict_accepts_every_input_form(tiny_model, wav_clip):
    expected = tiny_model.predict(wav_clip).scores
    audio = load_audio(wav_clip)
    for form in (str(wav_clip), wav_clip, wav_clip.read_bytes(), (audio.waveform, 16_000), audio):
        assert tiny_model.predict(form).scores == pytest.approx(expected, abs=1e-6)


def test_short_file_is_exactly_the_unwindowed_pass(tiny_model):
    clip = random_speechlike(20.0, seed=4)
    unwindowed = Recognizer(tiny_model.backend, window_s=MAX_WINDOW_S, context_s=1.0)  # 20 s: one window
    a = tiny_model.predict((clip, 16_000), "frame", embedding=True)
    b = unwindowed.predict((clip, 16_000), "frame", embedding=True)
    np.testing.assert_array_equal(a.embedding, b.embedding)
    assert a.scores == b.scores


def test_long_file_is_windowed_and_stitched(tiny_model):
    """75 s with 10 s windows: the track has the whole file's frame count, the verdict its mean."""
    clip = random_speechlike(75.0, seed=5)
    model = Recognizer(tiny_model.backend, window_s=10.0, context_s=1.0)
    seen = []
    result = model.predict((clip, 16_000), "frame", embedding=True, progress=lambda f, text: seen.append(f))
    frames = _frames(len(clip))
    assert result.embedding.shape == (frames, 64) and result.frame_scores.shape[0] == frames
    logits = tiny_model.backend.logits(result.embedding.mean(axis=0))
    expected = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
    np.testing.assert_allclose(list(result.scores.values()), expected, atol=1e-6)
    assert len(seen) >= 2 and seen == sorted(seen) and seen[-1] == pytest.approx(1.0)
    # the frame scores are the head on each stitched frame
    frame_logits = tiny_model.backend.logits(result.embedding)
    frame_probs = np.exp(frame_logits) / np.exp(frame_logits).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(result.frame_scores, frame_probs, atol=1e-5)
    utterance = model.predict((clip, 16_000), "utterance", embedding=True)
    np.testing.assert_allclose(utterance.embedding, result.embedding.mean(axis=0), atol=1e-5)


def test_windowed_frames_away_from_cuts_agree_with_a_longer_window(tiny_model):
    """Context overlap: a frame's features barely depend on where the window was cut."""
    clip = random_speechlike(24.0, seed=6)
    short = Recognizer(tiny_model.backend, window_s=8.0, context_s=2.0).predict((clip, 16_000), "frame", embedding=True)
    whole = Recognizer(tiny_model.backend, window_s=60.0).predict((clip, 16_000), "frame", embedding=True)
    assert short.embedding.shape == whole.embedding.shape
    cosine = (short.embedding * whole.embedding).sum(1) / (
        np.linalg.norm(short.embedding, axis=1) * np.linalg.norm(whole.embedding, axis=1)
    )
    assert np.median(cosine) > 0.99


def test_batch_keeps_input_order_and_matches_single_predictions(tiny_model, audio_files):
    paths = list(audio_files.values())
    batch = tiny_model.predict_batch(paths, granularity="frame", embedding=True)
    assert [r.source for r in batch] == [str(p) for p in paths]
    for path, result in zip(paths, batch):
        alone = tiny_model.predict(path, granularity="frame", embedding=True)
        np.testing.assert_allclose(result.embedding, alone.embedding, atol=1e-4)
        np.testing.assert_allclose(list(result.scores.values()), list(alone.scores.values()), atol=1e-5)


def test_batch_with_a_bad_file(tiny_model, wav_clip, tmp_path):
    bad = tmp_path / "notes.wav"
    bad.write_text("not audio")
    with pytest.raises(AudioDecodeError, match="notes.wav"):
        tiny_model.predict_batch([wav_clip, bad])
    results = tiny_model.predict_batch([wav_clip, bad, wav_clip], on_error="return")
    assert isinstance(results[1], AudioDecodeError)
    assert results[0].scores == results[2].scores


def test_many_files_span_several_decode_chunks(tiny_model):
    clips = [(random_speechlike(0.5 + 0.1 * i, seed=i), 16_000) for i in range(40)]
    names = [f"clip{i}" for i in range(40)]
    recognitions = list(tiny_model.iter_recognitions(clips, names=names))
    assert [r.index for r in recognitions] == list(range(40))
    assert [r.name for r in recognitions] == names
    assert all(r.error is None and r.result is not None for r in recognitions)


def test_bad_granularity(tiny_model, wav_clip):
    with pytest.raises(ValueError, match="granularity"):
        tiny_model.predict(wav_clip, granularity="word")


def test_an_hour_in_frame_mode_stays_in_bounded_memory(tmp_path, tiny_checkpoint):
    """60 minutes of 8 kHz WAV through decoding, windows and the frame track, in a fresh process."""
    import subprocess
    import sys

    import soundfile as sf

    path = tmp_path / "session.wav"
    minute = (random_speechlike(60.0, seed=11) * 32767).astype(np.int16)[::2]  # 8 kHz
    with sf.SoundFile(path, "w", samplerate=8_000, channels=1, subtype="PCM_16") as out:
        for _ in range(60):
            out.write(minute)
    probe = (
        "import resource, sys\n"
        "from emotion2vec_ui import load_model\n"
        "model = load_model(sys.argv[1], device='cpu')\n"
        "result = model.predict(sys.argv[2], granularity='frame')\n"
        "print(result.frame_scores.shape[0], resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)\n"
    )
    run = subprocess.run([sys.executable, "-c", probe, str(tiny_checkpoint), str(path)],
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    frames, peak_mb = map(int, run.stdout.split())
    assert frames == _frames(3600 * 16_000)
    # The 16 kHz waveform alone is 230 MB, held once: the decoder's buffer is sized from the header
    # (measured 957 MB peak alone; 1060 when the buffer still grew by copying; 1514 once inside a
    # whole suite run); a full-length attention over 180,000 frames would need over 100 GB.
    assert peak_mb < 2000, f"peak RSS {peak_mb} MB"


def test_batches_group_similar_lengths_within_the_budget(tiny_model):
    lengths = [16_000, 17_000, 30_000, 31_000, 32_000, 160_000, 480_000]
    audios = [tiny_model.decode((random_speechlike(n / 16_000, seed=i)[:n], 16_000)) for i, n in enumerate(lengths)]
    model = Recognizer(tiny_model.backend, batch_s=4.0 * tiny_model.backend.lanes)  # 4 s per batch
    calls = []
    encode = model.backend.encode

    def recording_encode(waves):
        calls.append([len(w) for w in waves])
        return encode(waves)

    model.backend.encode = recording_encode
    try:
        model.recognize(audios)
    finally:
        del model.backend.encode
    assert sorted(n for call in calls for n in call) == sorted(lengths)
    for call in calls:
        assert max(call) * len(call) <= 4 * 16_000 or len(call) == 1
        assert min(call) >= 0.9 * max(call)
    assert [16_000, 17_000] in calls and [30_000, 31_000] in calls


def test_progress_counts_the_files_own_seconds(tiny_model):
    """Long audio runs as overlapping windows; the progress still counts the file's seconds."""
    from emotion2vec_ui.audio.decode import load_audio

    audio = load_audio((random_speechlike(70.0), 16_000), name="long")
    messages = []
    tiny_model.recognize([audio], "utterance", progress=lambda fraction, text: messages.append(text))
    assert len(messages) > 1 and messages[-1] == "70 / 70 s of audio"


def test_python_errors_say_how_to_change_it_in_python(tiny_checkpoint, audio_files):
    """A limit or a bad model met through the Python API names load_model's argument (the
    library reads no environment variables); VadSettings comes from the package, as documented."""
    from emotion2vec_ui import AudioLimitError, AudioLimits, ModelLoadError, VadSettings, load_model

    model = load_model(tiny_checkpoint, device="cpu", limits=AudioLimits(max_duration_s=1.0),
                       vad=VadSettings(join_gap_s=0.2), warm_up=False)
    with pytest.raises(AudioLimitError, match=r"load_model\(\.\.\., limits=AudioLimits\(max_duration_s=\.\.\.\)\)"):
        model.predict(audio_files["wav-16000-1ch"])
    with pytest.raises(ModelLoadError, match="load_model's first argument"):
        load_model("not a model id", device="cpu")


def test_speaker_options_outside_segment_mode_are_refused(tiny_model, audio_files, tmp_path):
    """Speakers or names with utterance/frame would be silently ignored; names that cannot fit
    are refused before the file is even opened."""
    from emotion2vec_ui import SpeakerOptionError

    clip = audio_files["wav-44100-2ch"]
    for options in ({"speakers": "channels"}, {"speakers": 2}, {"speaker_names": ["agent"]}):
        with pytest.raises(SpeakerOptionError, match='apply to granularity "segment" only'):
            tiny_model.predict(clip, "frame", **options)
        with pytest.raises(SpeakerOptionError, match='apply to granularity "segment" only'):
            tiny_model.predict_batch([clip], on_error="return", **options)
    with pytest.raises(SpeakerOptionError, match="3 speaker names given for 2 speaker"):
        tiny_model.predict(tmp_path / "not_there.wav", "segment", speakers=2, speaker_names=["a", "b", "c"])
    assert tiny_model.predict(clip, "utterance", speakers="one").granularity == "utterance"



def test_options_of_the_wrong_kind_are_typed_errors(tiny_model, audio_files):
    """Every refusal shares the base class (`except Emotion2vecError` catches them all)."""
    from emotion2vec_ui import Emotion2vecError, OptionError, SpeakerOptionError

    clip = audio_files["wav-16000-1ch"]
    with pytest.raises(OptionError, match="granularity must be one of utterance, frame, segment, not 'segments'"):
        tiny_model.predict(clip, "segments")
    with pytest.raises(OptionError, match=r"embedding must be true or false \(a boolean\), not 'yes'"):
        tiny_model.predict(clip, embedding="yes")
    with pytest.raises(SpeakerOptionError, match=r"a list such as \['agent', 'customer'\], not the text"):
        tiny_model.predict(clip, "segment", speakers="auto", speaker_names="agent,customer")
    assert issubclass(OptionError, Emotion2vecError) and issubclass(OptionError, ValueError)
