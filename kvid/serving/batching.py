"""Server-side request batching (``--enable_batching``), configured by TF Serving's
``BatchingParameters``.

Concurrent requests to the same signature of the same version whose inputs agree in
everything but the batch size are concatenated into one call, which amortizes the
per-call cost on an accelerator. A request waits at most ``batch_timeout_micros`` for
company; a request as large as ``max_batch_size`` runs alone.
"""

from __future__ import annotations

import collections
import dataclasses
import os
import threading
import time
from typing import Callable

import grpc
import numpy as np

from kvid.serving.errors import ServingError

Run = Callable[[str, dict], dict]


@dataclasses.dataclass(eq=False)
class _Task:
    run: Run
    signature: str
    inputs: dict[str, np.ndarray]
    rows: int
    enqueued: float = dataclasses.field(default_factory=time.monotonic)
    done: threading.Event = dataclasses.field(default_factory=threading.Event)
    result: dict | None = None
    error: BaseException | None = None


def _wrapper_value(params, field: str, default):
    return getattr(params, field).value if params is not None and params.HasField(field) \
        else default


class Batcher:
    """Shared by every servable of a server; ``submit(run, signature, inputs)``."""

    def __init__(self, params=None):
        self.max_batch_size = _wrapper_value(params, "max_batch_size", 1000)
        self.timeout_s = _wrapper_value(params, "batch_timeout_micros", 0) / 1e6
        self.max_enqueued = _wrapper_value(params, "max_enqueued_batches", 10)
        threads = _wrapper_value(params, "num_batch_threads", os.cpu_count() or 1)
        self.allowed_sizes = sorted(params.allowed_batch_sizes) if params is not None else []
        self._queues: dict[tuple, collections.deque[_Task]] = {}
        self._cv = threading.Condition()
        self._closed = False
        self.batches_run = 0  # calls made, and requests they served (for tests and logs)
        self.requests_run = 0
        self._threads = [threading.Thread(target=self._loop, name=f"kvid-batch-{i}",
                                          daemon=True) for i in range(max(1, threads))]
        for t in self._threads:
            t.start()

    def close(self) -> None:
        with self._cv:
            self._closed = True
            self._cv.notify_all()
        for t in self._threads:
            t.join()

    def submit(self, run: Run, signature: str, inputs: dict[str, np.ndarray]) -> dict:
        sizes = {v.shape[0] if v.ndim else None for v in inputs.values()}
        rows = sizes.pop() if len(sizes) == 1 else None
        if not rows or rows >= self.max_batch_size:
            return run(signature, inputs)
        key = (run, signature) + tuple(sorted(
            (k, v.dtype.str, v.shape[1:]) for k, v in inputs.items()))
        task = _Task(run, signature, inputs, rows)
        with self._cv:
            queue = self._queues.setdefault(key, collections.deque())
            if sum(t.rows for t in queue) + rows > self.max_enqueued * self.max_batch_size:
                raise ServingError(grpc.StatusCode.UNAVAILABLE, "The batch scheduling queue "
                                   "to which this task was submitted is full")
            queue.append(task)
            self._cv.notify()
        task.done.wait()
        if task.error is not None:
            raise task.error
        return task.result

    def _next_batch(self) -> list[_Task] | None:
        with self._cv:
            while not self._closed:
                ready = [q for q in self._queues.values() if q]
                if not ready:
                    self._cv.wait()
                    continue
                queue = min(ready, key=lambda q: q[0].enqueued)
                wait = queue[0].enqueued + self.timeout_s - time.monotonic()
                if sum(t.rows for t in queue) < self.max_batch_size and wait > 0:
                    self._cv.wait(wait)
                    continue
                batch = [queue.popleft()]
                total = batch[0].rows
                while queue and total + queue[0].rows <= self.max_batch_size:
                    total += queue[0].rows
                    batch.append(queue.popleft())
                self.batches_run += 1
                self.requests_run += len(batch)
                return batch
        return None

    def _loop(self) -> None:
        while (batch := self._next_batch()) is not None:
            self._execute(batch)

    def _execute(self, batch: list[_Task]) -> None:
        try:
            inputs = {k: np.concatenate([t.inputs[k] for t in batch]) for k in batch[0].inputs}
            total = sum(t.rows for t in batch)
            padded = next((s for s in self.allowed_sizes if s >= total), total)
            if padded > total:  # repeat the last row up to an allowed batch size
                inputs = {k: np.concatenate([v, np.repeat(v[-1:], padded - total, axis=0)])
                          for k, v in inputs.items()}
            outputs = batch[0].run(batch[0].signature, inputs)
            for name, value in outputs.items():
                if value.ndim == 0 or value.shape[0] != padded:
                    raise ServingError(grpc.StatusCode.INTERNAL, f"Batched output {name} has "
                                       f"shape {value.shape}, not batch size {padded} first")
            offset = 0
            for t in batch:
                t.result = {k: v[offset:offset + t.rows] for k, v in outputs.items()}
                offset += t.rows
        except BaseException as e:  # every waiting request gets the failure
            for t in batch:
                t.error = e
        finally:
            for t in batch:
                t.done.set()
