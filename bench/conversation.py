"""Benchmark: segment mode on a long two-speaker conversation, against frame mode on the same file.

    python bench/conversation.py                    # 10-minute conversation, plus_large-size checkpoint
    python bench/conversation.py --minutes 60       # the 60-minute session
    python bench/conversation.py --tiny --minutes 1 # tiny checkpoint: checks the code paths

The recording is built once and cached: two espeak-ng voices (apt-get install espeak-ng)
take turns of one to three sentences with 0.4-2.5 s pauses, some turns following each
other within the VAD's join gap, over light background noise (16 kHz mono WAV). Each
mode runs in a child process of its own, so its peak resident memory (ru_maxrss) is its
own: segment mode with speakers="auto" (VAD, speaker embeddings, emotion per segment),
then frame mode. Times are wall-clock seconds, including decoding the file.
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import sys
import time
from pathlib import Path

import numpy as np

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path[:0] = [str(ROOT), str(BENCH)]

import report  # noqa: E402

SENTENCES = [
    "I have been waiting on hold for almost an hour",
    "Thank you for your patience let me pull up your account",
    "The invoice shows a charge I never agreed to",
    "I understand and I can see where that came from",
    "This is the third time I am calling about the same problem",
    "I will make sure it is fixed before the end of the day",
    "Can you tell me why nobody wrote back to my email",
    "Our records show the message arrived last Tuesday",
    "Honestly I am close to cancelling the whole contract",
    "Before you do that let me offer you a refund for this month",
    "That would help but I want a written confirmation",
    "Of course you will receive it within a few minutes",
]
PAUSES_S = (0.4, 2.5)  # range of the pause after a turn
NOISE_LEVEL = 1e-3
RATE = 16_000


def build_conversation(path: Path, minutes: float, seed: int = 0) -> dict:
    """Write the conversation WAV (cached by name) and return its duration and speech time in seconds."""
    from emotion2vec_ui.audio.testdata import speak, speech_bounds, write_audio

    lines = {}
    for voice in ("low", "high"):
        for text in SENTENCES:
            wave = speak(text, voice)
            first, last = speech_bounds(wave)
            lines[voice, text] = wave[first:last]
    rng = np.random.default_rng(seed)
    parts, speech, total, turn = [np.zeros(RATE, dtype=np.float32)], 0, RATE, 0
    while total < minutes * 60 * RATE:
        voice = ("low", "high")[turn % 2]
        for _ in range(rng.integers(1, 4)):
            wave = lines[voice, SENTENCES[rng.integers(len(SENTENCES))]]
            gap = np.zeros(int(rng.uniform(0.15, 0.4) * RATE), dtype=np.float32)  # within a turn: joined
            parts += [wave, gap]
            speech += len(wave)
            total += len(wave) + len(gap)
        pause = np.zeros(int(rng.uniform(*PAUSES_S) * RATE), dtype=np.float32)
        parts.append(pause)
        total += len(pause)
        turn += 1
    waveform = np.concatenate(parts)[: int(minutes * 60 * RATE)]
    waveform = waveform + rng.normal(0, NOISE_LEVEL, len(waveform)).astype(np.float32)
    if not path.is_file():
        write_audio(path, waveform, RATE, "wav")
    return {"duration_s": len(waveform) / RATE, "speech_s": min(speech, len(waveform)) / RATE, "turns": turn}


def child(mode: str, checkpoint: str, audio: str, conn) -> None:
    """Load the model, run one mode on the file, send back times and peak memory."""
    from emotion2vec_ui import load_model

    started = time.perf_counter()
    model = load_model(checkpoint, device="cpu")
    loaded = time.perf_counter()
    if mode == "segment":
        result = model.predict(audio, granularity="segment", speakers="auto")
        timings = {f"{step}_s": seconds for step, seconds in result.timings_s.items()}
        extra = {"segments": len(result.segments), "num_speakers": len(result.speakers), **timings}
    else:
        result = model.predict(audio, granularity="frame")
        extra = {"frames": len(result.frame_scores)}
    done = time.perf_counter()
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    conn.send({"load_s": loaded - started, "run_s": done - loaded, "peak_rss_mb": peak_mb, **extra})
    conn.close()


def run_child(mode: str, checkpoint: Path, audio: Path) -> dict:
    context = multiprocessing.get_context("spawn")
    receive, send = context.Pipe(duplex=False)
    process = context.Process(target=child, args=(mode, str(checkpoint), str(audio), send))
    process.start()
    send.close()
    result = receive.recv()
    process.join()
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="length of the conversation (default 10)")
    parser.add_argument("--tiny", action="store_true", help="tiny checkpoint instead of the plus_large sizes")
    parser.add_argument("--cache-dir", type=Path, default=BENCH / "cache", help="where inputs are built once")
    args = parser.parse_args(argv)

    from audioset import ensure_checkpoint

    load_at_start = report.load_average()
    args.cache_dir.mkdir(parents=True, exist_ok=True)
    checkpoint = ensure_checkpoint(args.cache_dir, "tiny" if args.tiny else "large")
    audio = args.cache_dir / f"conversation-{args.minutes:g}min.wav"
    info = build_conversation(audio, args.minutes)

    print(f"# Conversation benchmark: {info['duration_s'] / 60:.1f} min, two espeak-ng voices, "
          f"{info['speech_s'] / info['duration_s']:.0%} speech, {info['turns']} turns")
    print(f"CPU: {report.cpu_name()}, {report.core_count()} cores; 1-min load average at start {load_at_start:.2f}; "
          f"checkpoint: {'tiny' if args.tiny else 'plus_large-size'} random weights; device cpu, fp32", flush=True)
    segment = run_child("segment", checkpoint, audio)
    run = segment["run_s"]
    print(f"segment mode (speakers=auto): {run:.1f} s for {segment['segments']} segments, "
          f"{segment['num_speakers']} speakers found; peak RSS {segment['peak_rss_mb']:.0f} MB")
    print(f"  VAD {segment['vad_s']:.1f} s ({segment['vad_s'] / run:.1%}), "
          f"speaker embeddings + clustering {segment['speakers_s']:.1f} s ({segment['speakers_s'] / run:.1%}), "
          f"emotion {segment['emotion_s']:.1f} s ({segment['emotion_s'] / run:.1%}); "
          f"decoding and the rest {run - segment['total_s']:.1f} s", flush=True)
    frame = run_child("frame", checkpoint, audio)
    print(f"frame mode: {frame['run_s']:.1f} s for {frame['frames']} frames; peak RSS {frame['peak_rss_mb']:.0f} MB")
    print(f"segment / frame time: {run / frame['run_s']:.2f}; 1-min load average at the end {report.load_average():.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
