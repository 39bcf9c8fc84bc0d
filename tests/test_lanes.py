"""CPU lanes: batches side by side, each lane on its share of the cores, with the same results."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from emotion2vec_ui import ModelLoadError, load_model
from emotion2vec_ui.engine.backend import check_lanes, cpu_threads
from emotion2vec_ui.engine.lanes import CpuLanes

from .conftest import random_speechlike

needs_two_cores = pytest.mark.skipif(cpu_threads() < 2, reason="two lanes need two cores")


def _recording_encode(backend, calls: list):
    """Wrap `backend.encode` to note (thread name, torch threads, batch size) per call."""
    encode = backend.encode

    def recording(waves):
        calls.append((threading.current_thread().name, torch.get_num_threads(), len(waves)))
        return encode(waves)

    backend.encode = recording


def test_thread_count_is_the_cores_at_most_omp_num_threads(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    cores = cpu_threads()
    for value, expected in [("1", 1), (str(cores + 5), cores), ("0", cores), ("four", cores), ("", cores)]:
        monkeypatch.setenv("OMP_NUM_THREADS", value)
        assert cpu_threads() == expected, value


def test_lanes_run_on_their_thread_count_and_leave_other_threads_theirs():
    before = torch.get_num_threads()
    lanes = CpuLanes(2, before + 1)  # a count no other thread has
    try:
        assert lanes.threads_per_lane() == [before + 1, before + 1]
        assert torch.get_num_threads() == before
        later = []  # a thread's first torch call takes the last count set anywhere
        thread = threading.Thread(target=lambda: later.append(torch.get_num_threads()))
        thread.start()
        thread.join()
        assert later == [before]
        assert lanes.submit(torch.get_num_threads).result() == before + 1
    finally:
        lanes.close()


@needs_two_cores
def test_batches_side_by_side_give_the_one_at_a_time_results(tiny_checkpoint):
    one = load_model(tiny_checkpoint, device="cpu", lanes=1, batch_s=4.0)
    two = load_model(tiny_checkpoint, device="cpu", lanes=2, batch_s=8.0)  # also 4 s per batch
    assert (one.backend.lanes, two.backend.lanes) == (1, 2) and one.batch_samples == two.batch_samples
    clips = [(random_speechlike(0.5 + 0.6 * i, seed=i), 16_000) for i in range(9)]
    clips.append((random_speechlike(75.0, seed=99), 16_000))  # three windows, one batch each
    calls = []
    _recording_encode(two.backend, calls)
    try:
        alone = one.predict_batch(clips, granularity="frame", embedding=True)
        together = two.predict_batch(clips, granularity="frame", embedding=True)
    finally:
        del two.backend.encode
    assert len(calls) > 4
    assert all(name.startswith("e2v-lane") for name, _, _ in calls), calls
    assert {threads for _, threads, _ in calls} == {cpu_threads() // 2}
    for a, b in zip(alone, together):
        assert a.frame_scores.shape == b.frame_scores.shape
        np.testing.assert_allclose(b.frame_scores, a.frame_scores, atol=1e-5)
        np.testing.assert_allclose(b.embedding, a.embedding, atol=1e-5)  # (T, D) in frame mode
        np.testing.assert_allclose(list(b.scores.values()), list(a.scores.values()), atol=1e-5)


@needs_two_cores
def test_a_single_batch_runs_on_every_core_in_the_callers_thread(tiny_checkpoint):
    model = load_model(tiny_checkpoint, device="cpu", lanes=2)
    calls = []
    _recording_encode(model.backend, calls)
    try:
        model.predict((random_speechlike(3.0), 16_000))
    finally:
        del model.backend.encode
    assert calls == [(threading.current_thread().name, cpu_threads(), 1)]


@needs_two_cores
def test_an_error_in_a_lane_reaches_the_caller_and_the_model_goes_on(tiny_checkpoint):
    model = load_model(tiny_checkpoint, device="cpu", lanes=2, batch_s=4.0)
    clips = [(random_speechlike(0.5 + 0.3 * i, seed=i), 16_000) for i in range(8)]
    encode = model.backend.encode
    finished = []

    def failing(waves):
        if max(map(len, waves)) > 2 * 16_000:
            raise RuntimeError("out of memory in this batch")
        result = encode(waves)
        finished.append(len(waves))
        return result

    model.backend.encode = failing
    try:
        with pytest.raises(RuntimeError, match="out of memory in this batch"):
            model.predict_batch(clips)
    finally:
        del model.backend.encode
    done = len(finished)
    assert len(model.predict_batch(clips)) == 8  # the lock was released, the lanes serve
    assert len(finished) == done  # nothing of the failed call ran on after it returned


def test_lane_counts_are_checked():
    assert check_lanes(None, "cpu", 2) == 2 and check_lanes(None, "cpu", 16) == 2
    assert check_lanes(None, "cpu", 1) == 1 and check_lanes(None, "cuda:0", 8) == 1
    assert check_lanes(3, "cpu", 4) == 3 and check_lanes(1, "cuda", 8) == 1
    for bad in (0, -1, True, 1.5, "2"):
        with pytest.raises(ModelLoadError, match="whole number"):
            check_lanes(bad, "cpu", 2)
    with pytest.raises(ModelLoadError, match="applies to the CPU"):
        check_lanes(2, "cuda", 8)
    with pytest.raises(ModelLoadError, match="more than the 2 threads"):
        check_lanes(3, "cpu", 2)
    assert check_lanes(None, "cpu", 4, default=1) == 1 and check_lanes(2, "cpu", 4, default=1) == 2  # onnx
