"""Resemblyzer's pretrained voice encoder, run without the resemblyzer package.

The weights are Resemblyzer 0.1.4's (Apache-2.0), shipped in voice_encoder_files/ with
its LICENSE and a NOTICE that says how they were taken from its pretrained.pt. What
reaches the network is computed as Resemblyzer computes it (its audio.py, hparams.py and
voice_encoder.py): volume raised to -30 dBFS, a 40-band mel power spectrogram of 25 ms
windows every 10 ms, cut into partial windows of 160 frames (1.6 s); the network is a
3-layer LSTM (40 -> 256) whose last hidden state goes through a linear layer (256 -> 256),
a ReLU and L2 normalisation. So the embeddings are Resemblyzer's VoiceEncoder's.
The resemblyzer package itself is not used: it imports webrtcvad at import time, and the
distribution that its metadata names for it builds from source.
torch and librosa load with the encoder's first use.
"""

from __future__ import annotations

import threading
from importlib import resources

import numpy as np

from ..audio.decode import SAMPLE_RATE

WEIGHTS_FILE = "voice_encoder_files/resemblyzer-voice-encoder.npz"  # inside this package
MEL_WINDOW_MS = 25
MEL_STEP_MS = 10
MEL_BANDS = 40
PARTIAL_FRAMES = 160  # mel frames in a partial window: 1.6 s
HIDDEN_SIZE = 256
LAYERS = 3
EMBEDDING_SIZE = 256
TARGET_DBFS = -30  # quieter audio is raised to this level, louder audio is left as it is
INT16_MAX = 2**15 - 1
BATCH = 256  # partial windows per forward pass

STEP_SAMPLES = SAMPLE_RATE * MEL_STEP_MS // 1000  # 160
PARTIAL_SAMPLES = PARTIAL_FRAMES * STEP_SAMPLES  # 25,600

_encoder = None
_lock = threading.Lock()


def normalize_volume(wav: np.ndarray) -> np.ndarray:
    """`wav` raised to TARGET_DBFS when it is quieter (Resemblyzer's increase_only normalisation).
    Digital silence is returned as it is."""
    rms = np.sqrt(np.mean((wav * INT16_MAX) ** 2))
    if not rms > 0:
        return wav
    change_db = TARGET_DBFS - 20 * np.log10(rms / INT16_MAX)
    return wav if change_db < 0 else wav * (10 ** (change_db / 20))


def partial_slices(n_samples: int, rate: float, min_coverage: float) -> tuple[list[slice], list[slice]]:
    """Where a waveform of `n_samples` is cut into partial windows, `rate` a second: the
    windows' sample slices and mel frame slices. The last window is kept when at least
    `min_coverage` of it is real audio (or when it is the only one); the slices may reach
    past the end, so pad the waveform with zeros up to the last sample slice's stop."""
    assert 0 < min_coverage <= 1
    n_frames = int(np.ceil((n_samples + 1) / STEP_SAMPLES))
    frame_step = int(np.round((SAMPLE_RATE / rate) / STEP_SAMPLES))
    assert 0 < frame_step <= PARTIAL_FRAMES, "rate out of range"
    steps = max(1, n_frames - PARTIAL_FRAMES + frame_step + 1)
    mel_slices = [slice(i, i + PARTIAL_FRAMES) for i in range(0, steps, frame_step)]
    wav_slices = [slice(s.start * STEP_SAMPLES, s.stop * STEP_SAMPLES) for s in mel_slices]
    coverage = (n_samples - wav_slices[-1].start) / PARTIAL_SAMPLES
    if coverage < min_coverage and len(mel_slices) > 1:
        mel_slices, wav_slices = mel_slices[:-1], wav_slices[:-1]
    return wav_slices, mel_slices


def mel_spectrogram(wav: np.ndarray) -> np.ndarray:
    """(N,) float32 16 kHz -> (frames, MEL_BANDS) float32 mel power spectrogram (not log)."""
    import librosa  # heavy: librosa loads with the speaker encoder

    frames = librosa.feature.melspectrogram(
        y=wav,
        sr=SAMPLE_RATE,
        n_fft=SAMPLE_RATE * MEL_WINDOW_MS // 1000,
        hop_length=STEP_SAMPLES,
        n_mels=MEL_BANDS,
    )
    return frames.astype(np.float32).T


def embed_partials(mels: np.ndarray) -> np.ndarray:
    """(P, PARTIAL_FRAMES, MEL_BANDS) float32 -> (P, EMBEDDING_SIZE) unit embeddings.
    The network loads once, on the first call; threads take turns."""
    network = _load()
    with _lock:
        return network.embed(mels)


class _Network:
    """The encoder network on the CPU, with the shipped weights."""

    def __init__(self):
        import torch  # heavy: torch loads with the speaker encoder

        with resources.as_file(resources.files(__package__).joinpath(WEIGHTS_FILE)) as path:
            with np.load(path, allow_pickle=False) as archive:
                state = {name: torch.from_numpy(archive[name]) for name in archive.files}
        self.lstm = torch.nn.LSTM(MEL_BANDS, HIDDEN_SIZE, LAYERS, batch_first=True)
        self.linear = torch.nn.Linear(HIDDEN_SIZE, EMBEDDING_SIZE)
        for prefix, module in (("lstm.", self.lstm), ("linear.", self.linear)):
            module.load_state_dict({k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)})
            module.eval()

    def embed(self, mels: np.ndarray) -> np.ndarray:
        import torch  # heavy: as above

        out = []
        with torch.inference_mode():
            for i in range(0, len(mels), BATCH):
                _, (hidden, _) = self.lstm(torch.from_numpy(np.ascontiguousarray(mels[i : i + BATCH], dtype=np.float32)))
                raw = torch.relu(self.linear(hidden[-1]))
                out.append((raw / torch.norm(raw, dim=1, keepdim=True)).numpy())
        return np.concatenate(out) if out else np.zeros((0, EMBEDDING_SIZE), dtype=np.float32)


def _load() -> _Network:
    global _encoder
    with _lock:
        if _encoder is None:
            _encoder = _Network()
    return _encoder
