"""Acceptance of the time-series encoder on a generated labelled landscape (9 crop and land-cover classes whose
phenologies overlap, 24 dates, 30 % cloudy observations): Barlow Twins pretraining with the default recipe
lowers its loss and raises the effective rank of the representations, and with 1 % of the training parcels
labelled (one per class) the linear probe on the pretrained embeddings beats, on held-out parcels, the same
network trained from scratch and a random forest on the raw series (macro F1)."""

from __future__ import annotations

import pytest
from affine import Affine
from rasterio.crs import CRS

from decloud.core.raster import Grid
from decloud.sits.finetune import FinetuneConfig, evaluate
from decloud.sits.pretrain import PretrainConfig, pretrain
from decloud.sits.store import import_npy
from decloud.testing.series import LANDSCAPE_CLASSES, write_labelled_landscape

BANDS = ("B2", "B3", "B4", "B8", "B5", "B6", "B7", "B8A", "B11", "B12")
GRID = Grid(CRS.from_epsg(32631), Affine(10, 0, 600000, 0, -10, 4900000), 192, 192)


@pytest.mark.slow
def test_pretraining_raises_the_rank_and_its_linear_probe_beats_scratch_and_random_forest_at_1_percent(tmp_path):
    assert len(LANDSCAPE_CLASSES) >= 8
    processed, classes = write_labelled_landscape(tmp_path, GRID, dates=24, parcels=200, cloudy_share=0.3, seed=0)
    store = import_npy(processed, tmp_path / "series.zarr", tile="T31TEJ", bands=BANDS, nodata=-10000, grid=GRID)
    result = pretrain(
        PretrainConfig(store=store, out_dir=tmp_path / "encoder", dim=32, epochs=6, steps_per_epoch=40, seed=0)
    )
    assert result.loss[-1] < 0.6 * result.loss[0]
    assert result.effective_rank[-1] > result.effective_rank[0] + 1.0
    scores = evaluate(
        FinetuneConfig(
            store=store,
            labels=classes,
            out_dir=tmp_path / "eval",
            encoder=tmp_path / "encoder",
            methods=("linear_probe", "scratch", "random_forest"),
            labelled_share=0.01,
            seed=0,
        )
    )
    probe = scores["linear_probe"].macro_f1
    assert probe > scores["scratch"].macro_f1 + 0.05
    assert probe > scores["random_forest"].macro_f1 + 0.05
