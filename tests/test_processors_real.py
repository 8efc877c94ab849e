"""The processors on real data prepared with decloud's own commands: Meraner on a real co-located
Sentinel-1 / Sentinel-2 pair (BigEarthNet), and the S2-only CRGA time series on the 5-date eo-learn series
(no Sentinel-1 there), with random-weight models: the outputs are georeferenced on the inputs' grids and
clear pixels kept from the input equal the input."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from decloud.core.constants import S2_NODATA
from decloud.models.export import export_savedmodel
from decloud.models.registry import create_model
from decloud.preprocessing.sentinel1_prepare import prepare_s1_image
from decloud.preprocessing.sentinel2_prepare import prepare_s2_product
from decloud.production import crga_timeseries_processor, meraner_processor
from decloud.testing.bigearthnet import s1tiling_from_bigearthnet, theia_from_bigearthnet
from decloud.testing.rasters import raster_grid as grid
from decloud.testing.rasters import read_raster as read

BIGEARTHNET_S2 = "bigearthnet/BigEarthNet-S2-Example/S2A_MSIL2A_20170613T101031_87_48"
BIGEARTHNET_S1 = "bigearthnet/BigEarthNet-S1-Example/S1A_IW_GRDH_1SDV_20170613T165043_33UUP_87_48"


def export(folder: Path, name: str, **params) -> Path:
    model = create_model(name, **params)
    return export_savedmodel(model.model(), model, folder / name)


def test_meraner_on_a_real_s1_s2_pair(shared_data, tmp_path):
    theia = theia_from_bigearthnet(shared_data / BIGEARTHNET_S2, tmp_path / "raw")
    product = prepare_s2_product(theia, tmp_path / "S2")
    _, vh = s1tiling_from_bigearthnet(shared_data / BIGEARTHNET_S1, "T33UUP", tmp_path / "raw")
    s1 = prepare_s1_image(vh, tmp_path / "S1")
    assert s1.parent == tmp_path / "S1" / "T33UUP" and "ASC" in s1.name
    model = export(tmp_path, "meraner_unet", filters=4, depth=2)
    output = tmp_path / "meraner.tif"
    arguments = ["--il_s1", str(s1), "--in_s2", str(product), "--savedmodel", str(model), "--output", str(output)]
    assert meraner_processor.main([*arguments, "--keep_clear", "--ts", "64"]) == 0
    source = product / f"{product.name}_FRE_10m.tif"
    assert grid(output) == grid(source)
    crs, transform, shape = grid(output)
    assert (crs.to_epsg(), transform.c, transform.f, shape) == (32633, 404400, 5342400, (120, 120))
    # BigEarthNet patches are clear: every pixel is kept from the input.
    np.testing.assert_array_equal(read(output), read(source))


def test_s2_only_crga_time_series_on_the_real_series(shared_data, tmp_path):
    series = shared_data / "eolearn-timeseries" / "S2" / "T33TVL"
    products = sorted(prepare_s2_product(p, tmp_path / "S2") for p in series.iterdir())
    model = export(tmp_path, "crga_os2_unet", filters=4, depth=2, with_s1=False)
    out = tmp_path / "out"
    arguments = ["--s2_dir", str(tmp_path / "S2" / "T33TVL"), "--model", str(model), "--out_dir", str(out)]
    assert crga_timeseries_processor.main([*arguments, "--keep_clear", "--ts", "64", "--pad", "32"]) == 0
    # 07-11 has no earlier date and 09-09 no later one: both are clear (CLM all 0), so with --keep_clear they
    # are written as themselves; 07-31, 08-20 and 08-30 are reconstructed.
    written = sorted(path.name[:19] for path in out.iterdir())
    assert written == [product.name[:19] for product in products]
    for product in (products[0], products[-1]):
        output = out / f"{product.name}_reconstructed_FRE_10m.tif"
        np.testing.assert_array_equal(read(output), read(product / f"{product.name}_FRE_10m.tif"))
    for product in products[1:4]:
        output = out / f"{product.name}_reconstructed_FRE_10m.tif"
        source = product / f"{product.name}_FRE_10m.tif"
        assert grid(output) == grid(source)
        estimate, original = read(output), read(source)
        clear = read(product / f"{product.name}_CLM_R1.tif")[0] == 0
        np.testing.assert_array_equal(estimate[:, clear], original[:, clear])
        assert (estimate != S2_NODATA).all()
    # 07-31 and 08-20 are wholly cloudy (CLM): the network reconstructs them entirely.
    cloudy = read(products[1] / f"{products[1].name}_CLM_R1.tif")[0]
    assert (cloudy != 0).all()
    assert not np.array_equal(
        read(out / f"{products[1].name}_reconstructed_FRE_10m.tif"),
        read(products[1] / f"{products[1].name}_FRE_10m.tif"),
    )
