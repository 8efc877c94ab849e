"""Finding the worker that holds up a multi-worker training run.

TensorFlow names a worker that dies or is stopped (its heartbeats stop). A worker alive but stuck (a callback
writing to a hung file system, a deadlock) keeps sending heartbeats: the others wait in the step's
all-reduce, and TensorFlow's own collective timeout names nobody (and TensorFlow 2.21 was seen to crash
with a segmentation fault while aborting a timed-out collective, instead of raising). So each worker runs a
:class:`StepWatchdog`: when a training step has not ended within the timeout, a roll call through the
coordination service's key-value store tells the stuck worker(s) apart (every healthy worker is waiting in
the same step, times out too and says so; one stuck between two steps does not), and the watchdog aborts the
collectives with a message naming them, the way TensorFlow aborts them on a lost heartbeat. A worker stuck
inside a step (in its input pipeline) times out like the healthy ones: then nobody is named.
"""

from __future__ import annotations

import json
import os
import threading
import time

import keras
import tensorflow as tf

#: Seconds a worker whose step timed out waits for the others to say theirs did too (:func:`silent_workers`).
ROLL_CALL_SECONDS = 10.0
_TIMED_OUT_KEY = "decloud/step_timed_out"


def cluster_and_task() -> tuple[dict[str, list[str]], tuple[str, int]]:
    """The cluster (job -> addresses) and this process's (job, index), from TF_CONFIG."""
    tf_config = json.loads(os.environ.get("TF_CONFIG", "{}"))
    task = tf_config.get("task", {})
    return tf_config.get("cluster", {}), (task.get("type"), int(task.get("index", 0)))


def task_name(job: str, index: int) -> str:
    """TensorFlow's name of a task, as its errors write it."""
    return f"/job:{job}/replica:0/task:{index}"


def silent_workers(grace: float = ROLL_CALL_SECONDS) -> list[tuple[str, int]]:
    """After a step timed out here: the other workers that do not say theirs timed out too, within ``grace``
    seconds. With two workers the other one is the culprit without asking. Empty when the coordination
    service does not answer (the stuck worker may be the one hosting it)."""
    from tensorflow.python.eager import context  # the key-value store has no public API

    cluster, this = cluster_and_task()
    others = [(job, index) for job in sorted(cluster) for index in range(len(cluster[job])) if (job, index) != this]
    if len(others) <= 1:
        return others
    answers: dict[tuple[str, int], bool] = {}

    def roll_call() -> None:
        store = context.context()
        try:
            store.set_config_key_value(f"{_TIMED_OUT_KEY}/{this[0]}/{this[1]}", "1")
        except tf.errors.OpError:
            return
        deadline = time.monotonic() + grace
        for job, index in others:
            try:
                milliseconds = max(1, int(1000 * (deadline - time.monotonic())))
                store.get_config_key_value(f"{_TIMED_OUT_KEY}/{job}/{index}", milliseconds)
                answers[job, index] = True
            except tf.errors.OpError:  # DeadlineExceededError: no key within the grace period
                answers[job, index] = False

    caller = threading.Thread(target=roll_call, daemon=True)  # a service that does not answer cannot hang us
    caller.start()
    caller.join(grace + 5)
    if len(answers) < len(others):
        return []
    return [task for task in others if not answers[task]]


class StepWatchdog(keras.callbacks.Callback):
    """Aborts this worker's collectives when one of its training steps has not ended within ``timeout``
    seconds, naming the workers silent in the roll call: those not waiting in a step (a worker stuck between
    two steps does not answer). Not watched: from each epoch's end (validation, the chief's checkpoint) to the
    end of the next step, which also covers the run's first step (tracing and compiling it); TensorFlow's own
    collective timeout, later, covers them. Put it first among the callbacks, so that its clock pauses before
    the others' epoch-end work."""

    def __init__(self, timeout: float, grace: float = ROLL_CALL_SECONDS) -> None:
        super().__init__()
        self.timeout, self.grace = timeout, grace
        self._step_started: float | None = None  # when the step under way started, if it is watched
        self._watched = False  # whether steps are watched (not until a step has ended since the epoch began)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._calling = threading.Event()  # a roll call has started
        self._called = threading.Event()  # and ended: ``_silent`` holds its result
        self._silent: list[tuple[str, int]] = []

    def on_train_begin(self, logs=None) -> None:
        self._stop.clear()
        threading.Thread(target=self._watch, name="decloud-step-watchdog", daemon=True).start()

    def on_train_batch_begin(self, batch, logs=None) -> None:
        with self._lock:
            self._step_started = time.monotonic() if self._watched else None

    def on_train_batch_end(self, batch, logs=None) -> None:
        with self._lock:
            self._step_started, self._watched = None, True

    def on_epoch_end(self, epoch, logs=None) -> None:
        with self._lock:
            self._step_started, self._watched = None, False

    def on_train_end(self, logs=None) -> None:
        self._stop.set()

    def silent(self) -> list[tuple[str, int]] | None:
        """The workers silent in this worker's roll call (waiting for one under way), None without one."""
        if not self._calling.is_set():
            return None
        self._called.wait(self.grace + 10)
        return list(self._silent)

    def _watch(self) -> None:
        while not self._stop.wait(min(1.0, self.timeout / 4)):
            with self._lock:
                late = self._step_started is not None and time.monotonic() - self._step_started > self.timeout
            if late:
                self._abort()
                return

    def _abort(self) -> None:
        from tensorflow.python.eager import context  # TensorFlow aborts collectives this way on a lost heartbeat

        self._calling.set()
        self._silent = silent_workers(self.grace)
        self._called.set()
        named = ", ".join(task_name(job, index) for job, index in self._silent) or "none named (no roll call)"
        message = f"step timed out: a training step did not end within {self.timeout:g} s; silent workers: {named}"
        context.context().abort_collective_ops(tf.errors.DEADLINE_EXCEEDED, message)
