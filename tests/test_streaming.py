"""The streaming engine: chunk-size invariance against one call on the whole (mirrored) image, 10/20 m
alignment, no-data, skipped chunks, crop outputs on small images, bad models and grids."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest
import rasterio
from affine import Affine

from decloud.core.constants import S2_NODATA
from decloud.core.errors import GridMismatchError, InvalidArgumentError
from decloud.core.raster import Grid, write_array
from decloud.production.backends import ModelError, SavedModelBackend
from decloud.production.sources import RasterSource
from decloud.production.streaming import OutputSpec, StreamingEngine

SHAPE = (150, 170)  # 10 m rows, cols: neither a multiple of the chunks nor even
TRANSFORM = Affine(10, 0, 600000, 0, -10, 4900020)
CRS = "EPSG:32631"
MARGIN = 16  # > the model's receptive radius (2 px at 10 m + 2 px at 20 m = 6 px)


def build_model() -> keras.Model:
    """Fully convolutional, mixing a 10 m and a 20 m input and giving a 10 m and a 20 m output, plus a
    crop output like the OTBTF ``*_pad256`` ones."""
    keras.utils.set_random_seed(1)
    s2 = keras.Input((None, None, 4), name="s2_t")
    s2_20m = keras.Input((None, None, 6), name="s2_20m_t")
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(keras.layers.Rescaling(1e-4)(s2))
    y = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(keras.layers.Rescaling(1e-4)(s2_20m))
    z = keras.layers.Concatenate()([x, keras.layers.UpSampling2D(2)(y)])
    z = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(z)
    out = keras.layers.Rescaling(1e4, name="s2_estim")(keras.layers.Conv2D(4, 1)(z))
    out_20m = keras.layers.Rescaling(1e4, name="s2_20m_estim")(keras.layers.Conv2D(6, 2, strides=2)(z))
    crop = keras.layers.Cropping2D(256, name="s2_estim_pad256")(out)
    return keras.Model(
        {"s2_t": s2, "s2_20m_t": s2_20m}, {"s2_estim": out, "s2_20m_estim": out_20m, "s2_estim_pad256": crop}
    )


@pytest.fixture(scope="module")
def savedmodel(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("model") / "savedmodel"
    build_model().export(str(path), verbose=False)
    return path


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> tuple[Path, Path]:
    """A 10 m and a 20 m reflectance stack on aligned grids, with a no-data area on the 10 m one."""
    folder = tmp_path_factory.mktemp("inputs")
    rng = np.random.default_rng(0)
    s2 = rng.integers(100, 5000, size=(4, *SHAPE), dtype=np.int16)
    s2[:, 100:130, 20:60] = S2_NODATA
    s2_20m = rng.integers(100, 5000, size=(6, (SHAPE[0] + 1) // 2, (SHAPE[1] + 1) // 2), dtype=np.int16)
    write_array(folder / "s2.tif", s2, crs=CRS, transform=TRANSFORM, nodata=S2_NODATA)
    write_array(folder / "s2_20m.tif", s2_20m, crs=CRS, transform=TRANSFORM @ Affine.scale(2), nodata=S2_NODATA)
    return folder / "s2.tif", folder / "s2_20m.tif"


def reference_grid(path: Path) -> Grid:
    with rasterio.open(path) as dataset:
        return Grid.of(dataset)


def stream(
    savedmodel: Path, inputs: tuple[Path, Path], out: Path, chunk_size: int, pad: int, cog: bool = False, **kwargs
) -> list[Path]:
    grid = reference_grid(inputs[0])
    sources = [
        RasterSource("s2_t", inputs[0], grid, nodata=S2_NODATA),
        RasterSource("s2_20m_t", inputs[1], grid, scale=2, nodata=S2_NODATA),
    ]
    outputs = [
        OutputSpec("s2_estim", out / "estim.tif", ["B2", "B3", "B4", "B8"]),
        OutputSpec("s2_20m_estim", out / "estim_20m.tif", ["B5", "B6", "B7", "B8A", "B11", "B12"], scale=2),
    ]
    engine = StreamingEngine(
        kwargs.pop("backend", None) or SavedModelBackend(savedmodel), sources, grid, outputs,
        chunk_size=chunk_size, pad=pad, size_multiple=2, **kwargs,
    )  # fmt: skip
    return engine.run(cog=cog)


def whole_image_inputs(inputs: tuple[Path, Path]) -> tuple[np.ndarray, np.ndarray]:
    """The whole 10 m and 20 m images mirrored by MARGIN pixels (and to even sizes), for one model call."""
    with rasterio.open(inputs[0]) as a, rasterio.open(inputs[1]) as b:
        s2, s2_20m = np.moveaxis(a.read(), 0, -1), np.moveaxis(b.read(), 0, -1)
    s2_in = np.pad(s2, ((MARGIN, MARGIN + 10), (MARGIN, MARGIN + 6), (0, 0)), mode="symmetric")  # even sizes
    m2 = MARGIN // 2
    s2_20m_in = np.pad(s2_20m, ((m2, m2 + 5), (m2, m2 + 3), (0, 0)), mode="symmetric")
    return s2_in, s2_20m_in


@pytest.mark.parametrize(("chunk_size", "pad"), [(32, 16), (64, 16), (48, 32), (512, 16)])
def test_streamed_output_equals_one_call_on_the_whole_image(savedmodel, inputs, tmp_path, chunk_size, pad):
    paths = stream(savedmodel, inputs, tmp_path, chunk_size, pad)
    backend = SavedModelBackend(savedmodel)
    s2_in, s2_20m_in = whole_image_inputs(inputs)
    whole = backend.run(
        {"s2_t": s2_in[np.newaxis].astype(np.float32), "s2_20m_t": s2_20m_in[np.newaxis].astype(np.float32)},
        ["s2_estim", "s2_20m_estim"],
    )
    rows, cols = SHAPE
    expected = np.rint(whole["s2_estim"][0, MARGIN : MARGIN + rows, MARGIN : MARGIN + cols])
    m2 = MARGIN // 2
    expected_20m = np.rint(whole["s2_20m_estim"][0, m2 : m2 + (rows + 1) // 2, m2 : m2 + (cols + 1) // 2])
    with rasterio.open(paths[0]) as out, rasterio.open(inputs[0]) as source:
        assert (out.crs, out.transform, out.shape, out.count) == (source.crs, source.transform, source.shape, 4)
        assert out.descriptions == ("B2", "B3", "B4", "B8") and out.nodata == S2_NODATA
        streamed = np.moveaxis(out.read(), 0, -1)
        valid = (source.read() != S2_NODATA).all(axis=0)
    with rasterio.open(paths[1]) as out_20m, rasterio.open(inputs[1]) as source_20m:
        assert (out_20m.transform, out_20m.shape) == (source_20m.transform, source_20m.shape)
        streamed_20m = np.moveaxis(out_20m.read(), 0, -1)
    # No-data of the required 10 m input is no-data in the output (at 20 m: where any 10 m pixel is).
    assert (streamed[~valid] == S2_NODATA).all()
    assert (streamed[valid] != S2_NODATA).all()
    np.testing.assert_allclose(streamed[valid], expected[valid], atol=1)
    assert np.mean(streamed[valid] == expected[valid]) > 0.999  # equal but for a rare rounding tie
    valid_20m = (streamed_20m != S2_NODATA).all(axis=-1)
    assert valid_20m.sum() > 0.9 * valid_20m.size
    np.testing.assert_allclose(streamed_20m[valid_20m], expected_20m[valid_20m], atol=1)
    # The borders are kept: the first and last rows and columns hold values.
    assert (streamed[0] != S2_NODATA).all() and (streamed[:, -1] != S2_NODATA).all()


class CountingBackend(SavedModelBackend):
    calls = 0

    def run(self, inputs, outputs):
        type(self).calls += 1
        return super().run(inputs, outputs)


def test_tiles_without_valid_pixels_are_skipped(savedmodel, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    s2 = np.full((4, 128, 128), 1000, dtype=np.int16)
    s2[:, :64, :] = S2_NODATA  # the two upper 64 x 64 chunks are all no-data
    write_array(folder / "s2.tif", s2, crs=CRS, transform=TRANSFORM, nodata=S2_NODATA)
    write_array(
        folder / "s2_20m.tif", np.full((6, 64, 64), 500, np.int16), crs=CRS, transform=TRANSFORM @ Affine.scale(2)
    )
    CountingBackend.calls = 0
    paths = stream(
        savedmodel, (folder / "s2.tif", folder / "s2_20m.tif"), tmp_path, 64, 16, backend=CountingBackend(savedmodel)
    )
    assert CountingBackend.calls == 2
    with rasterio.open(paths[0]) as out:
        values = out.read()
    assert (values[:, :64] == S2_NODATA).all() and (values[:, 64:] != S2_NODATA).all()


def test_small_image_with_crop_outputs_in_the_model(savedmodel, tmp_path):
    """The model also has an ``s2_estim_pad256`` output: a 100 x 90 image (under 2 x 256) still runs."""
    folder = tmp_path / "in"
    folder.mkdir()
    rng = np.random.default_rng(2)
    write_array(folder / "s2.tif", rng.integers(0, 3000, (4, 100, 90), dtype=np.int16), crs=CRS, transform=TRANSFORM)
    write_array(
        folder / "s2_20m.tif",
        rng.integers(0, 3000, (6, 50, 45), dtype=np.int16),
        crs=CRS,
        transform=TRANSFORM @ Affine.scale(2),
    )
    paths = stream(savedmodel, (folder / "s2.tif", folder / "s2_20m.tif"), tmp_path, 512, 64)
    with rasterio.open(paths[0]) as out:
        assert out.shape == (100, 90) and (out.read() != S2_NODATA).all()


def test_bad_models_and_grids_fail_before_writing(savedmodel, inputs, tmp_path):
    grid = reference_grid(inputs[0])
    backend = SavedModelBackend(savedmodel)
    spec = OutputSpec("s2_estim", tmp_path / "out.tif", ["B2", "B3", "B4", "B8"])
    only_10m = [RasterSource("s2_t", inputs[0], grid, nodata=S2_NODATA)]
    with pytest.raises(ModelError, match=r"needs inputs \['s2_20m_t'\]"):
        StreamingEngine(backend, only_10m, grid, [spec])
    extra = [
        *only_10m,
        RasterSource("s2_20m_t", inputs[1], grid, scale=2),
        RasterSource("dem", inputs[1], grid, scale=2),
    ]
    with pytest.raises(ModelError, match=r"has no input \['dem'\]"):
        StreamingEngine(backend, extra, grid, [spec])
    sources = [*only_10m, RasterSource("s2_20m_t", inputs[1], grid, scale=2)]
    with pytest.raises(ModelError, match=r"has no output \['s2_cloudfree'\]"):
        StreamingEngine(backend, sources, grid, [OutputSpec("s2_cloudfree", tmp_path / "out.tif", ["B2"])])
    with pytest.raises(InvalidArgumentError, match="multiple of 2"):
        StreamingEngine(backend, sources, grid, [spec], chunk_size=63, size_multiple=2)
    shifted = tmp_path / "shifted.tif"
    write_array(shifted, np.zeros((6, 75, 85), np.int16), crs=CRS, transform=Affine(20, 0, 600010, 0, -20, 4900020))
    with pytest.raises(GridMismatchError, match=r"shifted\.tif"):
        RasterSource("s2_20m_t", shifted, grid, scale=2)
    assert not (tmp_path / "out.tif").exists()


def test_cog_output_equals_the_plain_output_zstd_then_deflate(savedmodel, tmp_path):
    rng = np.random.default_rng(3)
    inputs = (tmp_path / "s2.tif", tmp_path / "s2_20m.tif")
    write_array(inputs[0], rng.integers(0, 3000, (4, 600, 520), dtype=np.int16), crs=CRS, transform=TRANSFORM)
    scaled = TRANSFORM @ Affine.scale(2)
    write_array(inputs[1], rng.integers(0, 3000, (6, 300, 260), dtype=np.int16), crs=CRS, transform=scaled)
    plain = stream(savedmodel, inputs, tmp_path / "plain", 256, 16)
    cog = stream(savedmodel, inputs, tmp_path / "cog", 256, 16, cog=True)
    with rasterio.open(plain[0]) as a, rasterio.open(cog[0]) as b:
        np.testing.assert_array_equal(a.read(), b.read())
        assert b.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
        assert (a.profile["compress"], b.profile["compress"]) == ("zstd", "deflate")
        assert b.overviews(1) and b.descriptions == a.descriptions
    assert sorted(p.name for p in (tmp_path / "cog").iterdir()) == ["estim.tif", "estim_20m.tif"]


def test_onnx_backend_gives_the_savedmodel_output(savedmodel, inputs, tmp_path):
    from decloud.models.onnx_conversion import export_onnx
    from decloud.production.backends import OnnxBackend

    onnx_path = tmp_path / "model.onnx"
    export_onnx(savedmodel, onnx_path)
    from_savedmodel = stream(savedmodel, inputs, tmp_path / "tf", 64, 16)
    from_onnx = stream(savedmodel, inputs, tmp_path / "onnx", 64, 16, backend=OnnxBackend(onnx_path))
    for first, second in zip(from_savedmodel, from_onnx, strict=True):
        a, b = read_all(first), read_all(second)
        assert np.abs(a.astype(int) - b).max() <= 1
        assert np.mean(a == b) > 0.99


def read_all(path: Path) -> np.ndarray:
    with rasterio.open(path) as dataset:
        return dataset.read()


def test_keep_clear_keeps_clear_pixels_even_where_the_model_cannot_run(savedmodel, tmp_path):
    from datetime import UTC, datetime

    from decloud.core.products import S2Product
    from decloud.production.input_selection import ClearMaskSource

    product = S2Product(tmp_path / "PRODUCT", datetime(2021, 6, 1, tzinfo=UTC))
    product.directory.mkdir()
    rng = np.random.default_rng(4)
    s2 = rng.integers(100, 3000, (4, 128, 128), dtype=np.int16)
    s2_20m = rng.integers(100, 3000, (6, 64, 64), dtype=np.int16)
    s2_20m[:, :32] = S2_NODATA  # the upper half cannot be estimated
    clm = np.zeros((1, 128, 128), np.uint8)
    clm[:, 10:30, 10:30] = 2  # a cloud there: nothing to keep, nothing estimated
    clm[:, 90:100, 90:100] = 2  # a cloud in the lower half: estimated
    write_array(product.bands_10m, s2, crs=CRS, transform=TRANSFORM, nodata=S2_NODATA)
    write_array(tmp_path / "s2_20m.tif", s2_20m, crs=CRS, transform=TRANSFORM @ Affine.scale(2), nodata=S2_NODATA)
    write_array(product.cloud_mask, clm, crs=CRS, transform=TRANSFORM)
    grid = reference_grid(product.bands_10m)
    sources = [
        RasterSource("s2_t", product.bands_10m, grid, nodata=S2_NODATA),
        RasterSource("s2_20m_t", tmp_path / "s2_20m.tif", grid, scale=2, nodata=S2_NODATA),
        ClearMaskSource("clear", product, grid),
    ]
    spec = OutputSpec("s2_estim", tmp_path / "out.tif", ["B2", "B3", "B4", "B8"], keep_input="s2_t", clear_key="clear")
    StreamingEngine(SavedModelBackend(savedmodel), sources, grid, [spec], chunk_size=64, pad=16).run()
    out = read_all(tmp_path / "out.tif")
    clear = clm[0] == 0
    away = clear.copy()
    away[83:107, 83:107] = False  # within 7 pixels of the estimated cloud the estimate fades into the input
    np.testing.assert_array_equal(out[:, away], s2[:, away])
    ring = clear & ~away
    assert (out[:, ring] != s2[:, ring]).any()
    assert (out[:, 10:30, 10:30] == S2_NODATA).all()
    assert (out[:, 90:100, 90:100] != S2_NODATA).all() and (out[:, 90:100, 90:100] != s2[:, 90:100, 90:100]).any()
