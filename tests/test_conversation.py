"""Granularity "segment": speech segments, speakers, an emotion per segment, and their outputs."""

from __future__ import annotations

import csv
import io
import json
import re

import numpy as np
import pytest

from emotion2vec_ui import MonoAudioError, save_recognition
from emotion2vec_ui.audio.decode import SAMPLE_RATE, load_audio
from emotion2vec_ui.audio.testdata import write_audio
from emotion2vec_ui.cli.main import main
from emotion2vec_ui.errors import SpeakerOptionError
from emotion2vec_ui.results import NOT_AN_EMOTION, STRONGEST_MOMENTS

from .speech import dialogue, overlap_s, stereo_call

EDGE_TOLERANCE_S = 0.3


@pytest.fixture(scope="module")
def call():
    """The dialogue as a mono WAV file, its waveform and known speech regions."""
    return dialogue()


@pytest.fixture(scope="module")
def stereo_file(tmp_path_factory):
    stereo, regions = stereo_call()
    path = write_audio(tmp_path_factory.mktemp("stereo") / "call.wav", stereo, SAMPLE_RATE, "wav")
    return path, regions


@pytest.fixture(scope="module")
def auto_result(tiny_model, call):
    waveform, _ = call
    return tiny_model.predict((waveform, SAMPLE_RATE), granularity="segment", speakers="auto", embedding=True)


def test_segments_follow_the_known_speech(tiny_model, call):
    waveform, regions = call
    result = tiny_model.predict((waveform, SAMPLE_RATE), granularity="segment")
    assert result.granularity == "segment" and result.note is None
    assert len(result.segments) == len(regions)
    for segment, (start, end, _) in zip(result.segments, regions):
        assert abs(segment.start_s - start) <= EDGE_TOLERANCE_S and abs(segment.end_s - end) <= EDGE_TOLERANCE_S
        assert segment.speaker == "S1" and not segment.short
    assert [s.speaker for s in result.speakers] == ["S1"]


def test_segment_scores_equal_the_utterance_result_of_the_cut(tiny_model, call, auto_result):
    waveform, _ = call
    for segment in auto_result.segments:
        cut = waveform[round(segment.start_s * SAMPLE_RATE) : round(segment.end_s * SAMPLE_RATE)]
        alone = tiny_model.predict((cut, SAMPLE_RATE), granularity="utterance", embedding=True)
        assert segment.emotion == alone.emotion
        assert segment.scores == pytest.approx(alone.scores, abs=1e-6)
        np.testing.assert_allclose(segment.embedding, alone.embedding, atol=1e-5)


def test_whole_file_scores_are_the_speech_time_weighted_mean(auto_result):
    weights = np.array([s.duration_s for s in auto_result.segments])
    for label, score in auto_result.scores.items():
        expected = sum(w * s.scores[label] for w, s in zip(weights, auto_result.segments)) / weights.sum()
        assert score == pytest.approx(expected, abs=1e-12)
    assert auto_result.emotion == max(auto_result.scores, key=auto_result.scores.get)
    assert auto_result.embedding.shape == (len(auto_result.segments), 64)
    np.testing.assert_array_equal(auto_result.embedding[1], auto_result.segments[1].embedding)


def test_auto_tells_two_alternating_voices_apart(auto_result, call):
    _, regions = call
    names = {"low": "S1", "high": "S2"}  # numbered in order of first appearance
    right = sum(overlap_s((s.start_s, s.end_s), r[:2]) for s in auto_result.segments for r in regions
                if names[r[2]] == s.speaker)
    assert right / sum(end - start for start, end, _ in regions) >= 0.9
    assert [s.speaker for s in auto_result.speakers] == ["S1", "S2"]


def test_a_given_number_of_speakers_and_their_names(tiny_model, call):
    waveform, regions = call
    result = tiny_model.predict((waveform, SAMPLE_RATE), granularity="segment", speakers=2,
                                speaker_names=["customer", "agent"])
    expected = ["customer" if who == "low" else "agent" for _, _, who in regions]
    assert [s.speaker for s in result.segments] == expected


def test_stereo_channels_are_attributed_exactly(tiny_model, stereo_file):
    path, regions = stereo_file
    result = tiny_model.predict(path, granularity="segment", speakers="channels", speaker_names=["agent", "customer"])
    names = {"left": "agent", "right": "customer"}
    assert len(result.segments) == len(regions)
    for start, end, who in regions:  # each known region is found once, on its own channel
        found = [s for s in result.segments
                 if abs(s.start_s - start) <= EDGE_TOLERANCE_S and abs(s.end_s - end) <= EDGE_TOLERANCE_S]
        assert [s.speaker for s in found] == [names[who]]
    starts = [s.start_s for s in result.segments]
    assert starts == sorted(starts)
    overlapping = [(a, b) for a, b in zip(result.segments, result.segments[1:]) if b.start_s < a.end_s]
    assert overlapping and all(a.speaker != b.speaker for a, b in overlapping)


def test_stereo_default_names_are_channel_numbers(tiny_model, stereo_file):
    path, _ = stereo_file
    result = tiny_model.predict(path, granularity="segment", speakers="channels")
    assert {s.speaker for s in result.segments} == {"ch1", "ch2"}


def test_channels_on_a_mono_file_is_refused(tiny_model, wav_clip):
    with pytest.raises(MonoAudioError, match="two or more channels"):
        tiny_model.predict(wav_clip, granularity="segment", speakers="channels")


def test_silence_gives_a_valid_result_without_segments(tiny_model, tmp_path):
    noise = (0.002 * np.random.default_rng(0).standard_normal(3 * SAMPLE_RATE)).astype(np.float32)
    result = tiny_model.predict((noise, SAMPLE_RATE), granularity="segment", speakers="auto", embedding=True)
    assert result.segments == [] and result.speakers == [] and result.embedding is None
    assert "No speech" in result.note and set(result.scores.values()) == {0.0}
    folder = save_recognition(result, load_audio((noise, SAMPLE_RATE)), tmp_path)
    data = json.loads((folder / "result.json").read_text(encoding="utf-8"))
    assert data["segments"] == [] and data["note"] == result.note
    assert (folder / "segments.srt").read_text(encoding="utf-8") == ""


@pytest.mark.parametrize("speakers", ["several", 0, -1, 1.5, True])
def test_bad_speaker_modes_are_refused(tiny_model, wav_clip, speakers):
    with pytest.raises(ValueError, match="speakers must be"):
        tiny_model.predict(wav_clip, granularity="segment", speakers=speakers)


def test_speaker_names_must_fit(tiny_model, stereo_file):
    path, _ = stereo_file
    with pytest.raises(SpeakerOptionError, match="3 speaker names given for 2 speakers"):
        tiny_model.predict(path, granularity="segment", speakers="channels", speaker_names=["a", "b", "c"])
    with pytest.raises(SpeakerOptionError, match="3 speaker names given for 2 speakers"):  # the call, not an input
        tiny_model.predict_batch([path, path], granularity="segment", speakers=2, on_error="return",
                                 speaker_names=["a", "b", "c"])


def test_speaker_names_are_checked_before_any_work(tiny_model, call, monkeypatch):
    def no_vad(*args, **kwargs):
        raise AssertionError("the VAD ran before the names were checked")

    monkeypatch.setattr("emotion2vec_ui.segments.conversation.detect_speech", no_vad)
    waveform, _ = call
    for speakers, names in ((2, ["a"]), (None, ["a", "b"]), ("one", ["a", "b"]), ("auto", ["a", "a"])):
        with pytest.raises(SpeakerOptionError):
            tiny_model.predict((waveform, SAMPLE_RATE), granularity="segment", speakers=speakers, speaker_names=names)


def test_one_speaker_by_name(tiny_model, call, tmp_path, capsys, tiny_checkpoint):
    waveform, _ = call
    by_name = tiny_model.predict((waveform, SAMPLE_RATE), granularity="segment", speakers="one",
                                 speaker_names=["client"])
    assert by_name.segments and {segment.speaker for segment in by_name.segments} == {"client"}
    default = tiny_model.predict((waveform, SAMPLE_RATE), granularity="segment", speaker_names=["client"])
    assert [(s.start_s, s.speaker, s.scores) for s in by_name.segments] == [
        (s.start_s, s.speaker, s.scores) for s in default.segments]
    path = write_audio(tmp_path / "session.flac", waveform, SAMPLE_RATE, "flac")
    assert main(["predict", str(path), "--granularity", "segment", "--speakers", "one", "--speaker-names", "client",
                 "--model", str(tiny_checkpoint), "--device", "cpu", "--no-save", "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["segments"] and {segment["speaker"] for segment in record["segments"]} == {"client"}


def test_speaker_summary(auto_result):
    for summary in auto_result.speakers:
        own = [s for s in auto_result.segments if s.speaker == summary.speaker]
        assert summary.num_segments == len(own)
        assert summary.speech_s == pytest.approx(sum(s.duration_s for s in own))
        assert sum(summary.emotion_shares.values()) == pytest.approx(1.0)
        for emotion, share in summary.emotion_shares.items():
            assert share == pytest.approx(sum(s.duration_s for s in own if s.emotion == emotion) / summary.speech_s)
        assert summary.dominant_emotion == max(summary.emotion_shares, key=summary.emotion_shares.get)
        for emotion, moments in summary.strongest.items():
            assert emotion not in NOT_AN_EMOTION and 1 <= len(moments) <= STRONGEST_MOMENTS
            candidates = sorted((s.confidence for s in own if s.emotion == emotion), reverse=True)
            assert [m["confidence"] for m in moments] == candidates[:STRONGEST_MOMENTS]
        shown = {e for s in own if s.emotion not in NOT_AN_EMOTION for e in [s.emotion]}
        assert set(summary.strongest) == shown
    data = auto_result.to_dict()
    assert [s["speaker"] for s in data["speakers"]] == ["S1", "S2"]
    assert data["segments"][0]["scores"] == auto_result.segments[0].scores
    assert set(data["timings_s"]) >= {"vad", "speakers", "emotion", "total"}
    json.dumps(data)


def test_output_folder_has_table_and_subtitles(auto_result, call, tmp_path):
    waveform, _ = call
    folder = save_recognition(auto_result, load_audio((waveform, SAMPLE_RATE)), tmp_path)
    segments = auto_result.segments
    data = json.loads((folder / "result.json").read_text(encoding="utf-8"))
    assert data["granularity"] == "segment" and len(data["segments"]) == len(segments)
    assert data["segments_srt_file"] == "segments.srt" and data["embedding_file"] == "embedding.npy"
    assert np.load(folder / "embedding.npy").shape == (len(segments), 64)

    rows = list(csv.DictReader(io.StringIO((folder / "segments.csv").read_text(encoding="utf-8"))))
    assert len(rows) == len(segments)
    for row, segment in zip(rows, segments):
        assert float(row["start_s"]) == pytest.approx(segment.start_s, abs=5e-4)
        assert row["speaker"] == segment.speaker and row["emotion"] == segment.emotion
        for label, score in segment.scores.items():
            assert float(row[f"score_{label}"]) == pytest.approx(score, abs=1e-6)

    srt = (folder / "segments.srt").read_text(encoding="utf-8").strip().split("\n\n")
    vtt = (folder / "segments.vtt").read_text(encoding="utf-8").split("\n\n")
    assert vtt[0] == "WEBVTT" and len(srt) == len(vtt[1:]) == len(segments)
    cue = re.compile(r"(\d\d):(\d\d):(\d\d)[,.](\d{3}) --> (\d\d):(\d\d):(\d\d)[,.](\d{3})")
    for srt_cue, vtt_cue, segment in zip(srt, vtt[1:], segments):
        number, times, text = srt_cue.split("\n")
        h, m, s, ms, *_ = map(int, cue.fullmatch(times).groups())
        assert h * 3600 + m * 60 + s + ms / 1000 == pytest.approx(segment.start_s, abs=5e-4)
        assert "," in times and "." in vtt_cue.split("\n")[0]
        assert vtt_cue.split("\n")[1] == text
        assert re.fullmatch(rf"{segment.speaker}: \S+ \S+ {segment.emotion} {round(segment.confidence * 100)}%", text)


def test_cue_text_reads_like_a_caption():
    from emotion2vec_ui.outputs.subtitles import cue_text, to_srt
    from emotion2vec_ui.results import Segment

    segment = Segment(3661.5, 3663.25, "customer", "angry", 0.8213, {"angry": 0.8213, "neutral": 0.1787})
    assert cue_text(segment) == "customer: 😠 愤怒 angry 82%"
    assert to_srt([segment]) == "1\n01:01:01,500 --> 01:01:03,250\ncustomer: 😠 愤怒 angry 82%\n"


def test_cli_prints_one_line_per_segment(tiny_checkpoint, stereo_file, wav_clip, capsys, tmp_path):
    path, regions = stereo_file
    code = main(["predict", str(path), "--granularity", "segment", "--speakers", "channels",
                 "--speaker-names", "agent,customer", "--model", str(tiny_checkpoint), "--device", "cpu",
                 "--output-dir", str(tmp_path)])
    lines = capsys.readouterr().out.strip().split("\n")
    assert code == 0 and len(lines) == 1 + len(regions)
    assert f"{len(regions)} segments" in lines[0]
    assert all(line.split("\t")[2] in ("agent", "customer") for line in lines[1:])
    assert (next(tmp_path.iterdir()) / "segments.vtt").is_file()

    code = main(["predict", str(wav_clip), str(path), "--granularity", "segment", "--speakers", "channels",
                 "--model", str(tiny_checkpoint), "--device", "cpu", "--no-save", "--json"])
    out = [json.loads(line) for line in capsys.readouterr().out.strip().split("\n")]
    assert code == 1 and out[0]["error_type"] == "MonoAudioError"
    assert len(out[1]["segments"]) == len(regions)


def test_cli_refuses_a_bad_speaker_mode(capsys):
    with pytest.raises(SystemExit):
        main(["predict", "x.wav", "--granularity", "segment", "--speakers", "many"])
    assert "speakers must be" in capsys.readouterr().err


def test_vad_settings_reach_the_detector(tiny_checkpoint, stereo_file, capsys, monkeypatch):
    """--vad-max-segment-s and E2V_VAD_JOIN_GAP_S change the segments the CLI prints."""
    path, regions = stereo_file
    args = ["predict", str(path), "--granularity", "segment", "--speakers", "channels", "--no-save", "--json",
            "--model", str(tiny_checkpoint), "--device", "cpu"]
    assert main([*args, "--vad-max-segment-s", "1"]) == 0
    short = json.loads(capsys.readouterr().out)["segments"]
    assert len(short) > len(regions) and max(s["end_s"] - s["start_s"] for s in short) <= 1.0 + 1e-6
    monkeypatch.setenv("E2V_VAD_JOIN_GAP_S", "5")  # longer than every pause: one segment per channel
    assert main([*args, "--vad-max-segment-s", "60"]) == 0
    joined = json.loads(capsys.readouterr().out)["segments"]
    assert sorted(s["speaker"] for s in joined) == ["ch1", "ch2"]
    with pytest.raises(SystemExit):
        main([*args, "--vad-threshold", "1.5"])
    assert "--vad-threshold" in capsys.readouterr().err
