"""The engine stops its read-ahead and writer threads on every path out of a run (a model that raises
mid-image, a writer that fails, Ctrl-C): the caller closes the datasets right after, and a thread still
reading one of them crashed the process (segmentation fault after Ctrl-C)."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from types import FrameType

import numpy as np
import pytest
import rasterio
from rasterio._env import get_gdal_config

from decloud.core.constants import S2_NODATA
from decloud.core.errors import DecloudError, OutputWriteError
from decloud.core.raster import Grid, gdal_environment, write_array
from decloud.models.export import export_savedmodel
from decloud.models.registry import create_model
from decloud.preprocessing.sentinel2_prepare import prepare_s2_product
from decloud.production import streaming
from decloud.production.backends import ModelBackend
from decloud.production.sources import RasterSource
from decloud.production.streaming import OutputSpec, StreamingEngine
from decloud.testing.faults import ctrl_c_as_from_a_terminal
from decloud.testing.theia import make_theia_product

CRS = "EPSG:32631"
TRANSFORM = rasterio.Affine(10, 0, 600000, 0, -10, 4900020)
#: 256 x 256 pixels in 32 x 32 chunks: 64 chunks.
SIDE, CHUNK = 256, 32


class SlowSource(RasterSource):
    """A raster source whose reads take a while; a read still going on when the source is closed (the
    engine's caller closes it right after the run) is recorded instead of reading a closed dataset."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.reads = 0
        self.reads_after_close = 0
        self.closed = False

    def read(self, windows):
        self.reads += 1
        time.sleep(0.1)
        if self.closed:
            self.reads_after_close += 1
            raise RuntimeError("read on a closed source")
        return super().read(windows)

    def __exit__(self, *exc_info: object) -> None:
        self.closed = True
        super().__exit__(*exc_info)


class FailingModel(ModelBackend):
    """Gives 1000 everywhere, and raises on its ``fail_at``-th call."""

    def __init__(self, fail_at: int | None = None) -> None:
        self.inputs, self.outputs = {"s2_t": 4}, ["s2_estim"]
        self.fail_at, self.calls = fail_at, 0

    def run(self, inputs, outputs):
        self.calls += 1
        if self.calls == self.fail_at:
            raise DecloudError("the model failed")
        return {"s2_estim": np.full((*inputs["s2_t"].shape[:3], 4), 1000.0, np.float32)}


@pytest.fixture
def source(tmp_path: Path) -> SlowSource:
    path = tmp_path / "s2.tif"
    write_array(path, np.full((4, SIDE, SIDE), 500, np.int16), crs=CRS, transform=TRANSFORM, nodata=S2_NODATA)
    with rasterio.open(path) as dataset:
        grid = Grid.of(dataset)
    return SlowSource("s2_t", path, grid, nodata=S2_NODATA)


def run_then_close(source: SlowSource, model: ModelBackend, output: Path) -> None:
    """Run the engine and close the source right after, as the processors do."""
    spec = OutputSpec("s2_estim", output, ["B2", "B3", "B4", "B8"])
    with source:
        StreamingEngine(model, [source], source.reference, [spec], chunk_size=CHUNK, pad=8).run()


def assert_stopped(source: SlowSource, output: Path) -> None:
    """No read went on after the run (while the source was being closed), no reading or writing thread, no file
    left."""
    time.sleep(0.5)
    assert source.reads_after_close == 0
    assert not [
        thread.name for thread in threading.enumerate() if thread.name.startswith(("decloud-reader", "decloud-writer"))
    ]
    assert not output.parent.exists() or list(output.parent.iterdir()) == []


def test_a_model_raising_mid_image_stops_both_threads(source: SlowSource, tmp_path: Path) -> None:
    model = FailingModel(fail_at=10)
    output = tmp_path / "out" / "estim.tif"
    with pytest.raises(DecloudError, match="the model failed"):
        run_then_close(source, model, output)
    assert model.calls == 10
    assert_stopped(source, output)


def test_a_failing_writer_stops_both_threads(source: SlowSource, tmp_path: Path, monkeypatch) -> None:
    writes = []

    def failing_write(dataset, *args, **kwargs):
        writes.append(1)
        if len(writes) == 5:
            raise OutputWriteError(dataset.name, "simulated I/O error")

    monkeypatch.setattr(streaming, "write_window", failing_write)
    output = tmp_path / "out" / "estim.tif"
    with pytest.raises(OutputWriteError, match="simulated I/O error"):
        run_then_close(source, FailingModel(), output)
    assert len(writes) == 5  # nothing written once the writer failed
    assert source.reads < SIDE**2 // CHUNK**2  # the run stopped early
    assert_stopped(source, output)


def test_the_run_completes_without_fault(source: SlowSource, tmp_path: Path) -> None:
    """The same run without a fault: every chunk read once, the output all 1000."""
    output = tmp_path / "out" / "estim.tif"
    run_then_close(source, FailingModel(), output)
    assert source.reads == SIDE**2 // CHUNK**2
    with rasterio.open(output) as dataset:
        assert (dataset.read() == 1000).all()


def test_the_calling_thread_runs_the_model_and_the_writer_thread_converts_its_outputs(source, tmp_path, monkeypatch):
    """Whatever the calling thread does besides running the model adds to the run's time; the conversion of the
    model's outputs to the GeoTIFF's values (40 values per input pixel for a x2 super-resolution) is the writer's."""
    threads = {"model": set(), "conversion": set()}

    class RecordingModel(FailingModel):
        def run(self, inputs, outputs):
            threads["model"].add(threading.current_thread().name)
            return super().run(inputs, outputs)

    def recording_conversion(*args, **kwargs):
        threads["conversion"].add(threading.current_thread().name)
        return to_output_values(*args, **kwargs)

    to_output_values = streaming._to_output_values
    monkeypatch.setattr(streaming, "_to_output_values", recording_conversion)
    run_then_close(source, RecordingModel(), tmp_path / "out.tif")
    assert threads["model"] == {threading.main_thread().name}
    assert len(threads["conversion"]) == 1 and next(iter(threads["conversion"])).startswith("decloud-writer")
    with rasterio.open(tmp_path / "out.tif") as written:
        assert (written.read() == 1000).all()  # the model's value, converted


# --- Ctrl-C at the worst moments ------------------------------------------------------------------


@contextmanager
def ctrl_c_on_calls(*picks: Callable[[FrameType], bool]) -> Iterator[list[str]]:
    """Press Ctrl-C (a real SIGINT, through the process's handler) when the main thread first makes a call that
    ``picks[0]`` picks, then when it makes one that ``picks[1]`` picks, and so on; yield the names of the calls
    interrupted."""
    interrupted: list[str] = []

    def trace(frame: FrameType, event: str, arg: object) -> None:
        if event == "call" and len(interrupted) < len(picks) and picks[len(interrupted)](frame):
            interrupted.append(f"{frame.f_back.f_code.co_name} -> {frame.f_code.co_name}")
            signal.raise_signal(signal.SIGINT)

    sys.settrace(trace)
    try:
        yield interrupted
    finally:
        sys.settrace(None)


def starting_thread(name: str) -> Callable[[FrameType], bool]:
    """A thread named ``name...`` being started: the main thread waits for it to run, and is then interrupted
    after the thread has started but before the pool has recorded it."""

    def pick(frame: FrameType) -> bool:
        caller = frame.f_back
        return (
            frame.f_code is threading.Event.wait.__code__
            and caller.f_code is threading.Thread.start.__code__
            and caller.f_locals["self"].name.startswith(name)
        )

    return pick


def calling(function: Callable) -> Callable[[FrameType], bool]:
    return lambda frame: frame.f_code is function.__code__


class InterruptedModel(FailingModel):
    """Ctrl-C is pressed during its third call."""

    def run(self, inputs, outputs):
        if self.calls == 2:
            signal.raise_signal(signal.SIGINT)
        return super().run(inputs, outputs)


@pytest.mark.parametrize(
    ("model", "picks"),
    [
        (FailingModel(), (starting_thread("decloud-reader"),)),
        (FailingModel(), (starting_thread("decloud-writer"),)),
        (InterruptedModel(), (calling(threading.Thread.join),)),  # a second Ctrl-C while the threads are waited for
    ],
    ids=["while-the-reader-starts", "while-the-writer-starts", "twice"],
)
def test_a_ctrl_c_while_a_thread_starts_or_is_waited_for_leaves_no_thread_running(
    source: SlowSource, tmp_path: Path, model: FailingModel, picks, ctrl_c_raises
) -> None:
    """Before, a Ctrl-C landing while the reading thread started left it running unrecorded: the run returned, the
    caller closed the datasets, and the thread read a closed dataset (a segmentation fault in 1 of ~12 Ctrl-Cs
    right after the processor's start)."""
    output = tmp_path / "out" / "estim.tif"
    with pytest.raises(KeyboardInterrupt), ctrl_c_on_calls(*picks) as interrupted:
        run_then_close(source, model, output)
    assert len(interrupted) == len(picks)
    assert_stopped(source, output)


class ModelPressingCtrlCMidCall(FailingModel):
    """Ctrl-C is pressed in the middle of its second call, as when it lands in the Python code that TensorFlow
    calls back during a model call; counts the calls that ran to their end."""

    def __init__(self) -> None:
        super().__init__()
        self.completed = 0

    def run(self, inputs, outputs):
        if self.calls == 1:
            signal.raise_signal(signal.SIGINT)
        result = super().run(inputs, outputs)
        self.completed += 1
        return result


def test_a_ctrl_c_during_a_model_call_is_raised_when_the_call_returns(source, tmp_path, ctrl_c_raises) -> None:
    """Raised inside the call, it made TensorFlow print tracebacks of its own (seen in CI, once in 12 Ctrl-Cs)."""
    model = ModelPressingCtrlCMidCall()
    output = tmp_path / "out" / "estim.tif"
    with pytest.raises(KeyboardInterrupt):
        run_then_close(source, model, output)
    assert (model.calls, model.completed) == (2, 2)
    assert_stopped(source, output)


# --- Ctrl-C on a processor ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def crga_s2only_run(tmp_path_factory) -> tuple[list[str], Path]:
    """A crga-processor command (S2-only CRGA model) over 1024 x 1024 products in 32 x 32 chunks: a few seconds
    of streaming on an idle machine, so that every delay below falls inside it."""
    root = tmp_path_factory.mktemp("interrupt")
    products = [
        prepare_s2_product(
            make_theia_product(root / "raw", acquired=datetime(2021, 6, day, 10), shape=(1024, 1024)), root
        )
        for day in (2, 7)
    ]
    model = create_model("crga_os1_unet", filters=4, depth=2, with_s1=False)
    savedmodel = export_savedmodel(model.model(), model, root / "savedmodel")
    out = root / "out"
    argv = [sys.executable, "-m", "decloud", "crga-processor", "--il_s2before", str(products[0])]
    argv += ["--in_s2", str(products[1]), "--savedmodel", str(savedmodel), "--output", str(out / "rec.tif")]
    return [*argv, "--ts", "32", "--pad", "16"], out


@pytest.mark.slow
@pytest.mark.parametrize("delay", [0.0, 0.1, 0.5, 1.0])
def test_ctrl_c_during_inference_exits_130_and_leaves_nothing(crga_s2only_run, delay: float) -> None:
    argv, out = crga_s2only_run
    process = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=ctrl_c_as_from_a_terminal
    )
    deadline = time.monotonic() + 120
    while not (out.exists() and any(out.iterdir())):  # the engine has created its output: streaming
        assert process.poll() is None, process.communicate()
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"no output after 120 s: {process.communicate()}")
        time.sleep(0.02)
    time.sleep(delay)
    process.send_signal(signal.SIGINT)
    try:
        _, stderr = process.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        pytest.fail("the processor hung after Ctrl-C")
    assert process.returncode == 130, stderr  # not -11 (SIGSEGV) or -6 (SIGABRT)
    assert "interrupted" in stderr and "Traceback" not in stderr
    assert list(out.iterdir()) == []


# --- GDAL's block cache ---------------------------------------------------------------------------


def test_the_engine_streams_with_no_gdal_block_cache_and_gives_the_step_its_own_back(tmp_path, monkeypatch) -> None:
    """The streaming engine keeps no GDAL block, so that its writer thread compresses every block it writes; the
    step's own cache (128 MiB, ``tests/test_core.py``) is back after the run."""
    during_writes = []

    def recording_write(dataset, *args, **kwargs):
        during_writes.append(get_gdal_config("GDAL_CACHEMAX"))

    monkeypatch.setattr(streaming, "write_window", recording_write)
    path = tmp_path / "s2.tif"
    write_array(path, np.full((4, 64, 64), 500, np.int16), crs=CRS, transform=TRANSFORM, nodata=S2_NODATA)
    with rasterio.open(path) as dataset:
        grid = Grid.of(dataset)
    with gdal_environment():
        run_then_close(RasterSource("s2_t", path, grid, nodata=S2_NODATA), FailingModel(), tmp_path / "out.tif")
        assert get_gdal_config("GDAL_CACHEMAX") == 134_217_728  # the step's cache again
    assert during_writes == [0, 0, 0, 0]
