"""Training of a registered architecture from TFRecords, on one device or with ``tf.distribute``.

- ``single``: the default strategy; ``mirrored``: MirroredStrategy over the local GPUs (or, without GPU,
  every logical CPU device); ``multiworker``: MultiWorkerMirroredStrategy configured by ``TF_CONFIG``.
- ``batch_train`` / ``batch_valid`` are per replica: the global batch grows with the replicas, so a
  flag set for one GPU keeps its meaning on eight.
- An epoch is ``steps_per_epoch`` global batches (default: one pass over the training records), drawn from
  a shuffled, repeated stream, so every worker runs the same number of steps.
- Multi-worker collectives give up after ``collective_timeout`` seconds: a worker that dies or hangs makes the
  others fail with an error naming it, instead of waiting forever (TensorFlow names a dead or stopped worker,
  whose heartbeats stop; :mod:`decloud.models.stuck_workers` names one alive but stuck).
- After each epoch the chief saves weights, optimizer state and epoch (:mod:`decloud.models.checkpoints`);
  the same command started again resumes there. Only the chief writes checkpoints, summaries, the SavedModel.
"""

from __future__ import annotations

import json
import logging
import os
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras
import tensorflow as tf

from decloud.acquisitions.transplant import CLOUDY_AS_ACQUIRED
from decloud.core.atomic import outputs_to_write
from decloud.core.errors import DecloudError, InvalidArgumentError
from decloud.core.paths import require_output_folder
from decloud.models import checkpoints
from decloud.models.callbacks import MultiValidation, Summaries, validation_names
from decloud.models.data import check_records, cloudy_pixels_of, count_samples, model_dataset
from decloud.models.export import export_savedmodel
from decloud.models.losses import get_loss
from decloud.models.metrics import ALL_METRICS, DEFAULT_METRICS, keras_metrics
from decloud.models.model import Model
from decloud.models.registry import create_model, import_modules
from decloud.models.stuck_workers import ROLL_CALL_SECONDS, StepWatchdog, cluster_and_task
from decloud.sampling.tfrecords import check_sample_counts, corrupt_records_named

log = logging.getLogger(__name__)

STRATEGIES = ("single", "mirrored", "multiworker")
#: What TensorFlow raises in a worker whose collective peer died, hung or timed out.
PEER_FAILURES = (
    tf.errors.DeadlineExceededError,
    tf.errors.UnavailableError,
    tf.errors.CancelledError,
    tf.errors.AbortedError,
)


#: Seconds TensorFlow's own collective timeout waits beyond the step watchdog and its roll call.
BACKSTOP_SECONDS = 30.0


class WorkerLostError(DecloudError):
    """A multi-worker run lost a worker (dead, hung, or unreachable)."""


def lost_worker_message(
    error: tf.errors.OpError, timeout: float, silent: Sequence[tuple[str, int]] | None = None
) -> str:
    """One line naming the workers ``silent`` in this worker's roll call when it made one
    (:class:`~decloud.models.stuck_workers.StepWatchdog`), else those TensorFlow's error points to (a dead or
    stopped worker, or the stuck ones another worker's watchdog named), with their address in TF_CONFIG."""
    cluster, _ = cluster_and_task()
    others = list(silent) if silent is not None else named_peers(error)
    named = ", ".join(f"{job} {index} ({_address(cluster, job, index)})" for job, index in others)
    culprit = f"lost {named}" if named else "a worker did not answer"
    lines = [line.strip() for line in str(error.message).splitlines() if line.strip()]
    telling = [line for line in lines if any(word in line.lower() for word in _TELLING_WORDS)]
    said = (telling or lines or [type(error).__name__])[0]
    return (
        f"multi-worker training stopped: {culprit} (collectives wait at most {timeout:g} s, "
        f"--collective_timeout); TensorFlow said: {said[:300]}"
    )


def named_peers(error: tf.errors.OpError) -> list[tuple[str, int]]:
    """The (job, index) of the other tasks TensorFlow's error names (a dead worker, one without heartbeats);
    a timeout names only this task's own devices."""
    found = re.findall(r"/job:(\w+)/replica:\d+/task:(\d+)", str(error.message))
    this = cluster_and_task()[1]
    return sorted({(job, int(index)) for job, index in found} - {this})


#: Words of the line of TensorFlow's error that tells what happened (its first line is often "Graph execution error").
_TELLING_WORDS = ("unhealthy", "heartbeat", "deadline", "timed out", "timeout", "unavailable", "abort")


def _address(cluster: dict[str, list[str]], job: str, index: int) -> str:
    addresses = cluster.get(job, [])
    return addresses[index] if index < len(addresses) else "address not in TF_CONFIG"


@dataclass
class TrainingConfig:
    """Everything a training run needs; the command line maps one flag to one field."""

    model: str
    training_record: Path | None = None
    valid_records: Sequence[Path] = ()
    model_params: dict[str, Any] = field(default_factory=dict)
    model_modules: Sequence[str] = ()
    learning_rate: float = 2e-4
    batch_train: int = 4
    batch_valid: int = 4
    epochs: int = 1
    steps_per_epoch: int | None = None
    save_ckpt_dir: Path | None = None
    load_ckpt_dir: Path | None = None
    logdir: Path | None = None
    out_savedmodel: Path | None = None
    overwrite: bool = False  #: replace an ``out_savedmodel`` already written by decloud
    previews: bool = False
    all_metrics: bool = False
    valid_only: bool = False
    strategy: str = "single"
    collective_timeout: float = 600.0  #: seconds a multi-worker collective waits for every worker
    early_stopping: int | None = None
    save_best: bool = False
    seed: int | None = None
    loss: str = "masked_l1"
    #: Records of same-date truth: the loss counts only the holes and this many pixels around them (None: every
    #: valid target pixel). A model is scored on its holes; elsewhere the processors keep the clear pixels.
    hole_margin: int | None = None
    allow_partial: bool = False  #: a shard short of its summary's samples is a warning, not an error
    shuffle_buffer: int = 512


@dataclass
class TrainingResult:
    initial_epoch: int  #: epochs already done when this run started (restored from a checkpoint)
    epoch: int  #: epochs done when it ended
    history: dict[str, list[float]]  #: per-epoch logs of this run
    validation: dict[str, dict[str, float]]  #: last results per validation set
    savedmodel: Path | None
    model: keras.Model  #: the trained Keras model (main outputs), with its optimizer
    replicas: int = 1  #: replicas trained in sync (devices x workers)


def _check_config(config: TrainingConfig) -> None:
    if config.strategy not in STRATEGIES:
        raise InvalidArgumentError(f"unknown strategy {config.strategy!r} (known: {', '.join(STRATEGIES)})")
    for name in ("batch_train", "batch_valid", "epochs"):
        if getattr(config, name) < (0 if name == "epochs" else 1):
            raise InvalidArgumentError(f"{name} must be positive, not {getattr(config, name)}")
    if config.valid_only:
        if not config.valid_records:
            raise InvalidArgumentError("--valid_only needs --valid_records")
        if config.load_ckpt_dir is None and config.save_ckpt_dir is None:
            raise InvalidArgumentError("--valid_only needs the weights to validate: --load_ckpt_dir")
    elif config.training_record is None:
        raise InvalidArgumentError("--training_record is required (unless --valid_only)")
    if not 0 < config.collective_timeout < float("inf"):
        raise InvalidArgumentError(
            f"collective timeout must be a positive number of seconds, not {config.collective_timeout}"
        )
    if config.hole_margin is not None and config.hole_margin < 0:
        raise InvalidArgumentError(f"--hole_margin {config.hole_margin}: a number of pixels, 0 or more")
    if config.save_best and config.save_ckpt_dir is None:
        raise InvalidArgumentError("--save_best needs --save_ckpt_dir (where best.weights.h5 is kept)")
    outputs = {"--out_savedmodel": config.out_savedmodel, "--save_ckpt_dir": config.save_ckpt_dir}
    for flag, folder in {**outputs, "--logdir": config.logdir}.items():
        if folder is not None:
            require_output_folder(folder, f"{flag} folder")
    # Before training, not after hours of it: an output decloud did not write is never replaced, and
    # one it wrote only with --overwrite (a training run is resumed from checkpoints, not skipped).
    if config.out_savedmodel is not None and not outputs_to_write([config.out_savedmodel], config.overwrite):
        raise InvalidArgumentError(f"{config.out_savedmodel} is already a SavedModel: --overwrite to replace it")


def make_strategy(name: str, collective_timeout: float = 600.0) -> tf.distribute.Strategy:
    """The distribution strategy called ``name``; create it before any other TensorFlow work (a
    MultiWorkerMirroredStrategy must configure the runtime first). Training steps are watched by a
    :class:`~decloud.models.stuck_workers.StepWatchdog` after ``collective_timeout`` seconds; TensorFlow's
    own collective timeout, later, covers what it does not watch (each epoch's first step, validation)."""
    if name == "multiworker":
        if "TF_CONFIG" not in os.environ:
            raise InvalidArgumentError(
                "--strategy multiworker needs the TF_CONFIG environment variable (cluster, task)"
            )
        backstop = collective_timeout + ROLL_CALL_SECONDS + BACKSTOP_SECONDS
        options = tf.distribute.experimental.CommunicationOptions(timeout_seconds=backstop)
        return tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
    if name == "mirrored":
        devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
        return tf.distribute.MirroredStrategy([device.name for device in devices])
    return tf.distribute.get_strategy()


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    return bool(strategy.extended.should_checkpoint)


def compile_model(training_model: keras.Model, model: Model, config: TrainingConfig) -> None:
    names = ALL_METRICS if config.all_metrics else DEFAULT_METRICS
    outputs = model.output_names()
    training_model.compile(
        optimizer=keras.optimizers.Adam(config.learning_rate),
        loss={output: get_loss(config.loss) for output in outputs},
        metrics={output: keras_metrics(names) for output in outputs},
    )


def _training_dataset(strategy, model: Model, config: TrainingConfig):
    global_batch = config.batch_train * strategy.num_replicas_in_sync

    def dataset(context: tf.distribute.InputContext) -> tf.data.Dataset:
        workers = context.num_input_pipelines
        return model_dataset(
            config.training_record,
            model,
            context.get_per_replica_batch_size(global_batch),
            shuffle_buffer=config.shuffle_buffer,
            seed=config.seed,
            repeat=True,
            drop_remainder=True,
            shard=(workers, context.input_pipeline_id) if workers > 1 else None,
            allow_partial=config.allow_partial,
            hole_margin=config.hole_margin,
        )

    steps = config.steps_per_epoch or max(1, count_samples(config.training_record) // global_batch)
    return strategy.distribute_datasets_from_function(dataset), steps


def _validation_datasets(strategy, model: Model, config: TrainingConfig) -> dict[str, tf.data.Dataset]:
    """Validation sets, whole on every worker (auto-sharding off): the metrics are ratios of sums, which
    every worker adding the same sums leaves unchanged, and no worker waits for a shorter shard. With
    several replicas the last partial batch is left out (Keras cannot split it between replicas)."""
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    batch = config.batch_valid * strategy.num_replicas_in_sync
    partial = strategy.num_replicas_in_sync == 1
    datasets = {}
    for name, path in zip(validation_names(config.valid_records), config.valid_records, strict=True):
        count = count_samples(path)
        batches = -(-count // batch) if partial else count // batch
        if batches == 0:
            raise InvalidArgumentError(f"{path} holds {count} samples, fewer than one validation batch ({batch})")
        dataset = model_dataset(
            path,
            model,
            batch,
            drop_remainder=not partial,
            allow_partial=config.allow_partial,
            hole_margin=config.hole_margin,
        )
        datasets[name] = dataset.apply(tf.data.experimental.assert_cardinality(batches)).with_options(options)
    return datasets


def _preview_batch(datasets: dict[str, tf.data.Dataset], config: TrainingConfig, model: Model):
    if not config.previews:
        return None
    source = next(iter(datasets.values()), None)
    if source is None:
        source = model_dataset(config.training_record, model, config.batch_train)
    return next(iter(source.take(1)))


@dataclass
class _Run:
    """What the steps of one training run share."""

    config: TrainingConfig
    strategy: tf.distribute.Strategy
    model: Model
    network: keras.Model
    identity: dict[str, Any]
    validation: MultiValidation | None
    summaries: Summaries | None


def train(config: TrainingConfig) -> TrainingResult:
    """Train (or, with ``valid_only``, validate) ``config.model``; export the SavedModel if asked."""
    _check_config(config)
    strategy = make_strategy(config.strategy, config.collective_timeout)
    import_modules(config.model_modules)
    if config.seed is not None:
        keras.utils.set_random_seed(config.seed)
    model = create_model(config.model, **config.model_params)
    read = [*([] if config.valid_only else [config.training_record]), *config.valid_records]
    for records in read:
        check_records(records, model)  # before building anything: a wrong folder fails in a second
        check_sample_counts(records, allow_partial=config.allow_partial)
    identity = {"name": model.name, "params": model.get_config()}

    with strategy.scope():
        network = model.training_model()
        compile_model(network, model, config)
        resume_from = config.load_ckpt_dir or config.save_ckpt_dir
        initial_epoch, best = (0, None)
        if resume_from is not None and (config.load_ckpt_dir is not None or Path(resume_from).exists()):
            initial_epoch, best = checkpoints.restore(network, resume_from, identity)
            network.optimizer.learning_rate = config.learning_rate  # the command line's, not the saved one

    validation_sets = _validation_datasets(strategy, model, config)
    validation = MultiValidation(validation_sets) if validation_sets else None
    summaries = None
    if config.logdir is not None and is_chief(strategy):
        preview = _preview_batch(validation_sets, config, model)
        summaries = Summaries(config.logdir, model.output_names(), validation, preview)
    run = _Run(config, strategy, model, network, identity, validation, summaries)

    history: dict[str, list[float]] = {}
    epoch = initial_epoch
    with corrupt_records_named(read):
        if not config.valid_only and initial_epoch < config.epochs:
            history, epoch = _fit(run, initial_epoch, best)
        elif validation is not None:
            _validate_only(run, initial_epoch)

    if config.save_best and not config.valid_only and checkpoints.load_best(network, config.save_ckpt_dir):
        log.info("best weights (%s) restored for export", checkpoints.BEST_WEIGHTS)
    savedmodel = None
    if config.out_savedmodel is not None and is_chief(strategy):
        savedmodel = _export(network, config, model)
    latest = validation.latest if validation else {}
    return TrainingResult(initial_epoch, epoch, history, latest, savedmodel, network, strategy.num_replicas_in_sync)


def _validate_only(run: _Run, epoch: int) -> None:
    """Validation without training: asked for (``valid_only``), or every epoch is already done."""
    if not run.config.valid_only:
        log.info("%d epoch(s) already done: nothing to train, validating only", epoch)
    run.validation.set_model(run.network)
    run.validation.evaluate()
    if run.summaries is not None and run.config.valid_only:
        run.summaries.set_model(run.network)
        run.summaries.write(epoch, None)


def _fit(run: _Run, initial_epoch: int, best: float | None) -> tuple[dict[str, list[float]], int]:
    config, strategy = run.config, run.strategy
    dataset, steps = _training_dataset(strategy, run.model, config)
    monitor = "val_loss" if run.validation else "loss"
    watchdog = StepWatchdog(config.collective_timeout) if config.strategy == "multiworker" else None
    callbacks: list[keras.callbacks.Callback] = [watchdog] if watchdog else []  # first: see StepWatchdog
    callbacks += [run.validation] if run.validation else []
    if config.save_ckpt_dir is not None:
        callbacks.append(
            checkpoints.EpochCheckpoint(
                config.save_ckpt_dir,
                run.identity,
                enabled=is_chief(strategy),
                monitor=monitor if config.save_best else None,
                best=best,
            )
        )
    if run.summaries is not None:
        callbacks.append(run.summaries)
    if config.early_stopping:
        callbacks.append(keras.callbacks.EarlyStopping(monitor=monitor, patience=config.early_stopping, verbose=1))
    global_batch = config.batch_train * strategy.num_replicas_in_sync
    log.info("training %s: epochs %d -> %d, %d steps of %d samples", run.model.name, initial_epoch, config.epochs,
             steps, global_batch)  # fmt: skip
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "The model does not have any trainable weights")  # gap-filling
        try:
            result = run.network.fit(
                dataset,
                epochs=config.epochs,
                initial_epoch=initial_epoch,
                steps_per_epoch=steps,
                callbacks=callbacks,
                verbose=2 if is_chief(strategy) else 0,
                shuffle=False,  # the records stream is shuffled by tf.data
            )
        except PEER_FAILURES as error:
            if config.strategy != "multiworker":
                raise
            silent = watchdog.silent() if watchdog else None
            raise WorkerLostError(lost_worker_message(error, config.collective_timeout, silent)) from error
    history = {key: [float(value) for value in values] for key, values in result.history.items()}
    return history, initial_epoch + len(result.epoch)


def _export(training_model: keras.Model, config: TrainingConfig, model: Model) -> Path:
    """Export from a copy built outside the strategy, so the SavedModel holds plain variables."""
    serving = create_model(model.name, **model.get_config())
    serving.training_model().set_weights(training_model.get_weights())
    cloudy_pixels = cloudy_pixels_of(config.training_record) if config.training_record else CLOUDY_AS_ACQUIRED
    path = export_savedmodel(serving.model(), serving, config.out_savedmodel, cloudy_pixels)
    log.info("SavedModel written to %s", path)
    return path


def parse_model_params(text: str | None) -> dict[str, Any]:
    """Model parameters from a JSON object given on the command line."""
    if not text:
        return {}
    try:
        params = json.loads(text)
    except json.JSONDecodeError as error:
        raise InvalidArgumentError(f"--model_params is not valid JSON ({error}): {text!r}") from error
    if not isinstance(params, dict):
        raise InvalidArgumentError(f"--model_params must be a JSON object like '{{\"filters\": 64}}', not {text!r}")
    return params
