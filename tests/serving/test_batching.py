"""Micro-batching: requests grouped into one network call, each given its own rows; a full
queue refused at once; a failed batch fails its requests, not the worker."""

import io
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from conftest import TinyRun, wait_until
from pneumonia.inference.loading import load_bundle
from pneumonia.serving.batching import Batching, MicroBatcher, Overloaded
from pneumonia.serving.serve import create_app


def squares(value: int, n: int) -> list[np.ndarray]:
    return [np.full((4, 4), value, np.uint8) for _ in range(n)]


def test_concurrent_requests_share_batches_and_get_their_own_rows() -> None:
    gate, first_call = threading.Event(), threading.Event()

    def first_pixels(batch: list[np.ndarray]) -> np.ndarray:
        first_call.set()
        assert gate.wait(10)  # the first call holds on while the other requests queue up
        return np.array([float(sq[0, 0]) for sq in batch])

    batcher = MicroBatcher(first_pixels, Batching(max_batch=8, max_wait_ms=0, max_queue=64))
    answers: dict[int, np.ndarray] = {}

    def client(k: int) -> None:
        answers[k] = batcher.submit(squares(k, 1 + k % 3))

    threads = [threading.Thread(target=client, args=(k,)) for k in range(12)]
    threads[0].start()
    assert first_call.wait(10)
    for t in threads[1:]:
        t.start()
    wait_until(lambda: batcher.waiting() == 11)  # every other request is queued
    gate.set()
    for t in threads:
        t.join()
    batcher.close()
    for k in range(12):
        assert answers[k].tolist() == [float(k)] * (1 + k % 3)
    assert sum(batcher.batches) == sum(1 + k % 3 for k in range(12))
    assert max(batcher.batches) > 1  # requests were grouped
    assert max(batcher.batches) <= 8 + 2  # the last request may overshoot by its own size


def test_lanes_run_batches_at_once() -> None:
    both = threading.Barrier(2, timeout=5)  # passes only when two batches run together

    def meet(batch: list[np.ndarray]) -> np.ndarray:
        both.wait()
        return np.array([float(sq[0, 0]) for sq in batch])

    batcher = MicroBatcher(meet, Batching(max_batch=1, max_wait_ms=0), lanes=2)
    answers: dict[int, np.ndarray] = {}
    threads = [
        threading.Thread(target=lambda k=k: answers.update({k: batcher.submit(squares(k, 1))}))
        for k in (3, 4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    batcher.close()
    assert answers[3].tolist() == [3.0] and answers[4].tolist() == [4.0]
    assert not both.broken


def test_a_full_queue_is_refused_at_once() -> None:
    release = threading.Event()
    entered = threading.Event()

    def blocked(batch: list[np.ndarray]) -> np.ndarray:
        entered.set()
        release.wait(10)
        return np.zeros(len(batch))

    batcher = MicroBatcher(blocked, Batching(max_batch=1, max_wait_ms=0, max_queue=1))
    running = threading.Thread(target=batcher.submit, args=(squares(1, 1),))
    running.start()
    assert entered.wait(5)  # the worker holds the first request
    queued = threading.Thread(target=batcher.submit, args=(squares(2, 1),))
    queued.start()
    wait_until(lambda: batcher.waiting() == 1)  # the second request now fills the queue
    start = time.perf_counter()
    with pytest.raises(Overloaded) as refused:
        batcher.submit(squares(3, 1))
    assert time.perf_counter() - start < 0.5 and refused.value.retry_after >= 1
    release.set()
    running.join(5)
    queued.join(5)
    assert batcher.submit(squares(4, 1)).tolist() == [0.0]  # served again once drained
    batcher.close()


def test_a_failed_batch_fails_its_requests_and_the_worker_goes_on() -> None:
    calls = []

    def flaky(batch: list[np.ndarray]) -> np.ndarray:
        calls.append(len(batch))
        if len(calls) == 1:
            raise RuntimeError("boom")
        return np.ones(len(batch))

    batcher = MicroBatcher(flaky, Batching(max_batch=4, max_wait_ms=0))
    with pytest.raises(RuntimeError, match="boom"):
        batcher.submit(squares(0, 2))
    assert batcher.submit(squares(0, 3)).tolist() == [1.0, 1.0, 1.0]
    batcher.close()


def test_invalid_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="invalid batching"):
        Batching(max_batch=0)


def test_the_service_answers_503_with_retry_after_when_full(
    tiny_run: TinyRun, tmp_path: Path
) -> None:
    app = create_app(load_bundle(tiny_run.bundle), batching=Batching(1, 0, 1))
    batcher = app.state.batcher
    real, release, entered = batcher.run, threading.Event(), threading.Event()

    def blocked(batch: list[np.ndarray]) -> np.ndarray:
        entered.set()
        release.wait(10)
        return real(batch)

    batcher.run = blocked
    square = np.zeros((32, 32), np.uint8)
    first = threading.Thread(target=batcher.submit, args=([square],))
    first.start()
    assert entered.wait(5)
    second = threading.Thread(target=batcher.submit, args=([square],))
    second.start()
    wait_until(lambda: batcher.waiting() == 1)  # it fills the queue
    png = io.BytesIO()
    Image.fromarray(np.full((40, 40), 90, np.uint8)).save(png, format="PNG")
    client = TestClient(app)
    response = client.post("/predict", files={"files": ("x.png", png.getvalue(), "image/png")})
    assert response.status_code == 503 and int(response.headers["Retry-After"]) >= 1
    assert "busy" in response.json()["error"]
    release.set()
    first.join(5)
    second.join(5)
    again = client.post("/predict", files={"files": ("x.png", png.getvalue(), "image/png")})
    assert again.status_code == 200 and 0 <= again.json()["results"][0]["probability"] <= 1
