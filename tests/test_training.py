"""Training runs: the command line, TensorBoard summaries and previews, checkpoints that survive a kill,
validation only, early stopping and the best epoch, errors on records that do not fit the model, and (slow)
MirroredStrategy on two logical CPUs and MultiWorkerMirroredStrategy with two local worker processes."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from decloud.cli import main as decloud_main
from decloud.core.errors import InvalidArgumentError
from decloud.core.keys import sample_keys
from decloud.models import checkpoints
from decloud.models.registry import create_model
from decloud.models.stuck_workers import ROLL_CALL_SECONDS, silent_workers
from decloud.models.train_from_tfrecords import main
from decloud.models.training_loop import TrainingConfig, lost_worker_message, train
from decloud.testing.records import LAYOUTS, write_records

# Keras 3.15's weights saving calls np.array on variables whose __array__ predates numpy 2's copy keyword
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")

MODEL = "crga_os2_david"
PARAMS = {"filters": 4}
STEPS = 3


@pytest.fixture(scope="module")
def records(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("records")
    names = sample_keys(LAYOUTS["crga_os2"])
    return {
        "train": write_records(root / "train", names, n_samples=8, patchsize=64),
        "valid": write_records(root / "valid", names, n_samples=3, patchsize=64, seed=1),
        "minitrain": write_records(root / "minitrain", names, n_samples=2, patchsize=64, seed=2),
        "os1": write_records(root / "os1", sample_keys(LAYOUTS["crga_os1"]), n_samples=2, patchsize=64),
    }


def config(records, **changes) -> TrainingConfig:
    base = {
        "model": MODEL,
        "model_params": PARAMS,
        "training_record": records["train"],
        "valid_records": [records["valid"]],
        "batch_train": 2,
        "steps_per_epoch": STEPS,
        "seed": 0,
    }
    return TrainingConfig(**(base | changes))


def event_tags(run: Path) -> set[str]:
    tags = set()
    for path in run.glob("events.out.tfevents.*"):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            tags.update(value.tag for value in event.summary.value)
    return tags


def test_command_line_writes_summaries_per_output_and_validation_set_and_previews(records, tmp_path):
    arguments = [
        "--training_record", str(records["train"]),
        "--valid_records", str(records["valid"]), str(records["minitrain"]),
        "-m", MODEL, "--model_params", json.dumps(PARAMS),
        "-lr", "0.001", "-bt", "2", "-bv", "2", "-e", "2", "--steps_per_epoch", str(STEPS),
        "--logdir", str(tmp_path / "logs"), "--previews", "--all_metrics",
        "--save_ckpt_dir", str(tmp_path / "ckpt"), "--out_savedmodel", str(tmp_path / "savedmodel"),
    ]  # fmt: skip
    assert main(arguments) == 0
    runs = {path.name for path in (tmp_path / "logs").iterdir()}
    assert runs == {"train", "valid_valid", "valid_minitrain", "previews"}
    metrics = {"loss"} | {f"s2_estim/{name}" for name in ("mae", "mse", "psnr", "ssim", "sam")}
    for run in ("train", "valid_valid", "valid_minitrain"):
        assert metrics <= event_tags(tmp_path / "logs" / run), run
    previews = event_tags(tmp_path / "logs" / "previews")
    assert {"inputs/s2_t", "inputs/s1_tm1", "outputs/s2_estim", "targets/s2_estim"} <= previews
    assert checkpoints.read_state(tmp_path / "ckpt")["epoch"] == 2
    signature = tf.saved_model.load(str(tmp_path / "savedmodel")).signatures["serving_default"]
    assert "s2_estim_pad256" in signature.structured_outputs
    description = json.loads((tmp_path / "savedmodel" / "decloud_model.json").read_text())
    assert description["model"] == MODEL and description["params"]["filters"] == 4

    # --valid_only on the same checkpoint reproduces the last epoch's validation
    last = train(config(records, epochs=2, save_ckpt_dir=tmp_path / "ckpt")).validation  # nothing left to train
    again = train(config(records, valid_only=True, load_ckpt_dir=tmp_path / "ckpt", training_record=None))
    assert again.epoch == 2 and not again.history
    np.testing.assert_allclose(again.validation["valid"]["loss"], last["valid"]["loss"], rtol=1e-6)


def test_resumed_training_continues_from_the_saved_epoch_weights_and_optimizer(records, tmp_path):
    first = train(config(records, epochs=1, save_ckpt_dir=tmp_path / "ckpt", learning_rate=1e-3))
    assert first.epoch == 1 and checkpoints.read_state(tmp_path / "ckpt")["epoch"] == 1
    saved = create_model(MODEL, **PARAMS).training_model()
    saved.load_weights(tmp_path / "ckpt" / checkpoints.epoch_weights_name(1))
    # learning rate 0: the weights stay those restored, the optimizer's step count goes on
    second = train(config(records, epochs=3, save_ckpt_dir=tmp_path / "ckpt", learning_rate=0.0))
    assert (second.initial_epoch, second.epoch, len(second.history["loss"])) == (1, 3, 2)
    assert int(second.model.optimizer.iterations.numpy()) == 3 * STEPS
    for restored, expected in zip(second.model.get_weights(), saved.get_weights(), strict=True):
        np.testing.assert_array_equal(restored, expected)
    fresh = create_model(MODEL, **PARAMS).training_model()
    assert any(not np.array_equal(a, b) for a, b in zip(fresh.get_weights(), saved.get_weights(), strict=True))
    assert sorted(path.name for path in (tmp_path / "ckpt").glob("epoch-*")) == [
        checkpoints.epoch_weights_name(epoch) for epoch in (1, 2, 3)
    ]


def test_a_killed_run_resumes_after_its_last_saved_epoch(records, tmp_path):
    command = [
        sys.executable, "-m", "decloud.models.train_from_tfrecords",
        "--training_record", str(records["train"]), "-m", MODEL, "--model_params", json.dumps(PARAMS),
        "-bt", "2", "-e", "1000", "--steps_per_epoch", "2", "--save_ckpt_dir", str(tmp_path / "ckpt"),
    ]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while (checkpoints.read_state(tmp_path / "ckpt") or {"epoch": 0})["epoch"] < 2:
            assert process.poll() is None and time.monotonic() < deadline, "training did not reach epoch 2"
            time.sleep(0.2)
    finally:
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
    done = checkpoints.read_state(tmp_path / "ckpt")["epoch"]
    resumed = train(
        TrainingConfig(
            model=MODEL, model_params=PARAMS, training_record=records["train"], batch_train=2, steps_per_epoch=2,
            epochs=done + 1, save_ckpt_dir=tmp_path / "ckpt",
        )
    )  # fmt: skip
    assert (resumed.initial_epoch, resumed.epoch) == (done, done + 1)
    assert int(resumed.model.optimizer.iterations.numpy()) == 2 * (done + 1)


def test_early_stopping_and_the_best_epoch(records, tmp_path):
    result = train(
        config(records, epochs=5, learning_rate=0.0, early_stopping=1, save_best=True, save_ckpt_dir=tmp_path / "c")
    )
    assert result.epoch == 2  # nothing improves with a learning rate of 0: stops after the patience
    state = checkpoints.read_state(tmp_path / "c")
    assert state["monitor"] == "val_loss"
    np.testing.assert_allclose(state["best"], result.history["val_loss"][0])
    assert (tmp_path / "c" / checkpoints.BEST_WEIGHTS).is_file()


def test_a_checkpoint_of_another_model_is_refused(records, tmp_path):
    train(config(records, epochs=1, save_ckpt_dir=tmp_path / "ckpt"))
    other = config(records, epochs=2, save_ckpt_dir=tmp_path / "ckpt", model_params={"filters": 8})
    with pytest.raises(Exception, match="written by model"):
        train(other)


def test_records_that_do_not_fit_the_model_are_named_before_training(records, tmp_path, capsys):
    arguments = ["--training_record", str(records["os1"]), "-m", MODEL, "--model_params", json.dumps(PARAMS)]
    assert main(arguments) == 1
    error = capsys.readouterr().err
    assert str(records["os1"]) in error and "missing keys ['s1_tp1', 's2_tp1']" in error
    assert decloud_main(["train", *arguments]) == 1
    assert main(["-m", MODEL]) == 1 and "--training_record is required" in capsys.readouterr().err
    assert main(["--training_record", str(records["train"]), "-m", MODEL, "--model_params", "[1]"]) == 1
    done = subprocess.run(
        [sys.executable, "-m", "decloud.models.train_from_tfrecords", *arguments], capture_output=True, text=True
    )
    assert done.returncode == 1 and "missing keys" in done.stderr


# --- tf.distribute (slow: each test starts fresh TensorFlow processes) ------------------------------

DISTRIBUTED_SCRIPT = """
import sys, json
from pathlib import Path
import tensorflow as tf
if sys.argv[1] == "mirrored":
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from decloud.models.training_loop import TrainingConfig, lost_worker_message, train
result = train(TrainingConfig(
    model="crga_os2_david", model_params={"filters": 4}, training_record=Path(sys.argv[2]),
    valid_records=[Path(sys.argv[3])], batch_train=2, batch_valid=1, steps_per_epoch=2, epochs=2, strategy=sys.argv[1],
    save_ckpt_dir=Path(sys.argv[4]), out_savedmodel=Path(sys.argv[5]),
))
print(json.dumps({"epoch": result.epoch, "replicas": result.replicas,
                  "loss": result.history["loss"], "valid": result.validation["valid"]["loss"]}))
"""


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for sock in sockets:
        sock.bind(("localhost", 0))
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports


def run_script(tmp_path: Path, arguments: list[str], env: dict[str, str] | None = None) -> subprocess.Popen:
    script = tmp_path / "distributed_training.py"
    script.write_text(textwrap.dedent(DISTRIBUTED_SCRIPT))
    return subprocess.Popen(
        [sys.executable, str(script), *arguments],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )


@pytest.mark.slow
def test_mirrored_strategy_on_two_logical_cpus(records, tmp_path):
    process = run_script(
        tmp_path, ["mirrored", str(records["train"]), str(records["valid"]), str(tmp_path / "ck"), str(tmp_path / "sm")]
    )
    out, err = process.communicate(timeout=600)
    assert process.returncode == 0, err[-3000:]
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["replicas"] == 2 and summary["epoch"] == 2 and all(np.isfinite(summary["loss"]))
    assert tf.saved_model.load(str(tmp_path / "sm")).signatures["serving_default"] is not None


@pytest.mark.slow
def test_multiworker_strategy_with_two_local_workers(records, tmp_path):
    ports = free_ports(2)
    cluster = {"worker": [f"localhost:{port}" for port in ports]}
    processes = []
    for index in range(2):
        tf_config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
        arguments = [
            "multiworker", str(records["train"]), str(records["valid"]),
            str(tmp_path / f"ck{index}"), str(tmp_path / f"sm{index}"),
        ]  # fmt: skip
        processes.append(run_script(tmp_path, arguments, {"TF_CONFIG": tf_config}))
    results = [process.communicate(timeout=600) for process in processes]
    for process, (_, err) in zip(processes, results, strict=True):
        assert process.returncode == 0, err[-3000:]
    summaries = [json.loads(out.strip().splitlines()[-1]) for out, _ in results]
    assert [(summary["epoch"], summary["replicas"]) for summary in summaries] == [(2, 2), (2, 2)]
    np.testing.assert_allclose(summaries[0]["valid"], summaries[1]["valid"], rtol=1e-5)
    # only the chief (worker 0) writes checkpoints and the SavedModel
    assert checkpoints.read_state(tmp_path / "ck0")["epoch"] == 2 and not (tmp_path / "ck1").exists()
    assert (tmp_path / "sm0" / "saved_model.pb").is_file() and not (tmp_path / "sm1").exists()


#: A ``decloud train`` worker that prints "3 steps done" when its fourth training step has ended, and that
#: after SIGUSR1 gets stuck at the end of its next step (as in a callback writing to a hung file system): its
#: main thread sleeps between two steps while TensorFlow's threads, its heartbeats among them, go on.
WORKER = """
import signal, sys, time
from decloud.models import stuck_workers
stuck = []
signal.signal(signal.SIGUSR1, lambda *_: stuck.append(True))
batch_end = stuck_workers.StepWatchdog.on_train_batch_end
def on_train_batch_end(self, batch, logs=None):
    batch_end(self, batch, logs)
    if batch == 3:
        print("3 steps done", flush=True)
    if stuck:
        time.sleep(10**6)
stuck_workers.StepWatchdog.on_train_batch_end = on_train_batch_end
from decloud.models.train_from_tfrecords import main
sys.exit(main())
"""


def start_workers(records, tmp_path: Path, count: int, timeout: int) -> tuple[list[subprocess.Popen], list[Path], list]:
    """``count`` ``decloud train`` workers of one MultiWorkerMirroredStrategy run on localhost, returned once
    each has ended a few steps of the first epoch (of 100000 steps: far from its end)."""
    ports = free_ports(count)
    cluster = {"worker": [f"localhost:{port}" for port in ports]}
    arguments = ["--training_record", str(records["train"]), "-m", "crga_os2_david", "--model_params", '{"filters": 4}']
    arguments += ["-bt", "2", "-e", "2", "--steps_per_epoch", "100000", "--strategy", "multiworker"]
    arguments += ["--collective_timeout", str(timeout)]
    workers, logs = [], [tmp_path / f"worker{index}.err" for index in range(count)]
    for index in range(count):
        tf_config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
        workers.append(
            subprocess.Popen(
                [sys.executable, "-c", WORKER, *arguments],
                stdout=subprocess.PIPE,
                stderr=logs[index].open("w"),  # a file: TensorFlow's logs cannot fill a pipe and block it
                text=True,
                env={**os.environ, "TF_CONFIG": tf_config, "PYTHONUNBUFFERED": "1"},
            )
        )
    try:
        for worker in workers:
            assert "3 steps done\n" in iter(worker.stdout.readline, "")
        assert all(worker.poll() is None for worker in workers)
    except BaseException:
        stop_workers(workers)
        raise
    return workers, logs, ports


def stop_workers(workers: list[subprocess.Popen]) -> None:
    for worker in workers:
        worker.kill()  # SIGKILL also ends a stopped process
        worker.communicate()


@pytest.mark.slow
def test_multiworker_training_fails_naming_a_worker_killed_mid_epoch(records, tmp_path):
    workers, logs, ports = start_workers(records, tmp_path, 2, timeout=30)
    chief, other = workers
    try:
        other.kill()
        chief.communicate(timeout=300)
    finally:
        stop_workers(workers)
    assert chief.returncode == 1
    message = logs[0].read_text().strip().splitlines()[-1]
    assert message.startswith(
        f"decloud train: error: multi-worker training stopped: lost worker 1 (localhost:{ports[1]})"
    )
    assert "--collective_timeout" in message


@pytest.mark.slow
def test_multiworker_training_fails_naming_a_worker_stopped_mid_epoch(records, tmp_path):
    """A worker alive but not progressing (SIGSTOP: its sockets stay open, nothing is refused) makes the
    chief stop within the collective timeout, with one line naming it, instead of waiting forever."""
    timeout = 20
    workers, logs, ports = start_workers(records, tmp_path, 2, timeout=timeout)
    chief, other = workers
    try:
        other.send_signal(signal.SIGSTOP)
        chief.communicate(timeout=timeout + 60)  # the timeout, plus the slack of a busy machine
    finally:
        stop_workers(workers)
    assert chief.returncode == 1
    lines = logs[0].read_text().strip().splitlines()
    assert lines[-1].startswith(
        f"decloud train: error: multi-worker training stopped: lost worker 1 (localhost:{ports[1]})"
    ), "\n".join(lines[-30:])
    assert "--collective_timeout" in lines[-1] and not any(line.startswith("Traceback") for line in lines)


@pytest.mark.slow
def test_multiworker_training_fails_naming_a_worker_stuck_mid_epoch(records, tmp_path):
    """A worker alive and sending heartbeats but stuck between two steps (TensorFlow's timeout names nobody):
    the two others stop within the collective timeout plus the roll call, naming it in one line."""
    timeout = 20
    workers, logs, ports = start_workers(records, tmp_path, 3, timeout=timeout)
    try:
        workers[2].send_signal(signal.SIGUSR1)
        for worker in workers[:2]:
            worker.communicate(timeout=timeout + ROLL_CALL_SECONDS + 60)  # plus the slack of a busy machine
    finally:
        stop_workers(workers)
    for worker, log in zip(workers[:2], logs[:2], strict=True):
        lines = log.read_text().strip().splitlines()
        assert worker.returncode == 1, "\n".join(lines[-30:])
        assert lines[-1].startswith(
            f"decloud train: error: multi-worker training stopped: lost worker 2 (localhost:{ports[2]}) "
            "(collectives wait at most 20 s, --collective_timeout); TensorFlow said: "
        ), "\n".join(lines[-30:])
        assert "a training step did not end within 20 s" in lines[-1]
        assert not any(line.startswith("Traceback") for line in lines)


def test_a_lost_worker_is_named_with_its_address(monkeypatch):
    cluster = {"worker": ["host-a:2222", "host-b:2222", "host-c:2222"]}
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": cluster, "task": {"type": "worker", "index": 0}}))
    error = tf.errors.UnavailableError(
        None, None, "Graph execution error:\n\nThe following tasks are unhealthy (stopped sending heartbeats):\n"
        "/job:worker/replica:0/task:2\nThe tasks have crashed.",
    )  # fmt: skip
    assert lost_worker_message(error, 30) == (
        "multi-worker training stopped: lost worker 2 (host-c:2222) (collectives wait at most 30 s, "
        "--collective_timeout); TensorFlow said: The following tasks are unhealthy (stopped sending heartbeats):"
    )
    # TensorFlow's timeout names only this worker's own device: nobody is lost
    timed_out = tf.errors.DeadlineExceededError(
        None, None, "{{function_node __wrapped__CollectiveReduceV2_device_/job:worker/replica:0/task:0/device:CPU:0}}"
        " Collective has timed out during execution.",
    )  # fmt: skip
    assert lost_worker_message(timed_out, 20).startswith(
        "multi-worker training stopped: a worker did not answer (collectives wait at most 20 s"
    )
    # the step watchdog's abort names the workers silent in its roll call
    aborted = tf.errors.DeadlineExceededError(
        None, None, "{{function_node __wrapped__CollectiveReduceV2_device_/job:worker/replica:0/task:0/device:CPU:0}}"
        " step timed out: a training step did not end within 20 s; silent workers: /job:worker/replica:0/task:1",
    )  # fmt: skip
    assert lost_worker_message(aborted, 20).startswith(
        "multi-worker training stopped: lost worker 1 (host-b:2222) (collectives wait at most 20 s, "
        "--collective_timeout); TensorFlow said: {{function_node"
    )
    # of two workers, the other one did not answer
    two = {"cluster": {"worker": cluster["worker"][:2]}, "task": {"type": "worker", "index": 1}}
    monkeypatch.setenv("TF_CONFIG", json.dumps(two))
    assert silent_workers() == [("worker", 0)]
    with pytest.raises(InvalidArgumentError, match="collective timeout must be a positive number of seconds"):
        train(TrainingConfig(model="crga_os2_david", training_record=Path("r"), collective_timeout=0))
