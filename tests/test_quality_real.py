"""Real-data acceptance of same-date-truth training: on the eo-learn series (T33TVL), the real cloud masks of the
cloudy dates (2015-07-31, 2015-08-20) transplanted onto the clear dates (07-11, 08-30, 09-09) give same-date
truth; a model trained on the upper part of the crop beats linear gap-filling over the whole series on the hole
pixels of held-out lower patches (MAE and PSNR from the pooled MSE)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from decloud.models.record_scoring import evaluate
from decloud.preprocessing.sentinel2_prepare import prepare_s2_product
from decloud.sampling.tfrecords import iterate_numpy
from decloud.testing.series_records import same_date_experiment


@pytest.fixture(scope="module")
def prepared(shared_data, tmp_path_factory):
    root = tmp_path_factory.mktemp("eolearn")
    for product in sorted((shared_data / "eolearn-timeseries" / "S2" / "T33TVL").iterdir()):
        prepare_s2_product(product, root / "S2")
    return root / "S2" / "T33TVL"


@pytest.mark.slow
def test_model_beats_whole_series_gap_filling_on_real_transplanted_holes(prepared, tmp_path):
    experiment = same_date_experiment(prepared, tmp_path, epochs=25, seed=0)
    # 3 clear targets x 2 orders of the two other clear dates x 2 mask donors = 12 samples per patch position
    assert experiment.train_samples == 12 * 5 * 9 and experiment.test_samples == 12 * 3
    description = json.loads((experiment.savedmodel / "decloud_model.json").read_text())
    assert description["cloudy_pixels"] == "nodata"
    report = evaluate(experiment.savedmodel, experiment.test, s2_root=experiment.s2_root)
    assert report["scored_pixels"].startswith("hole pixels (s2_holes_t)")
    methods = report["outputs"]["s2_estim"]["methods"]
    assert methods["model"]["pixels"] == 36 * 32 * 32  # the real masks of both cloudy dates cover the whole crop
    model, gapfilling = methods["model"]["overall"], methods["gapfilling_series"]["overall"]
    assert model["mae"] < gapfilling["mae"]
    assert model["psnr"] > gapfilling["psnr"]


def test_held_out_records_are_the_real_pixels_with_real_masks(shared_data, prepared, tmp_path):
    """The records hold the prepared pixels of the clear dates, holed by the real CLM of a cloudy date."""
    from decloud.testing.series_records import Scene, positions, write_series_records

    scene = Scene.load(prepared)
    assert [p.acquired.strftime("%m%d") for p in scene.products] == ["0711", "0731", "0820", "0830", "0909"]
    assert scene.clear_dates == [0, 3, 4] and scene.cloudy_dates == [1, 2]
    assert positions(68, 101, 100, 32, 32) == [(68, 0), (68, 32), (68, 64)]
    assert write_series_records(scene, tmp_path / "test", [(68, 32)], 32) == 12
    source = np.load(shared_data / "eolearn-timeseries" / "s2_l1c_5dates_with_masks.npz")
    bands = np.rint(source["bands"][..., [1, 2, 3, 7]] * 10000).astype(np.int16)  # B2 B3 B4 B8
    for sample in iterate_numpy(tmp_path / "test"):
        target = [p.acquired.timestamp() for p in scene.products].index(sample["s2_timestamp_target"])
        np.testing.assert_array_equal(sample["s2_target"], bands[target, 68:100, 32:64])
        donor = [p.acquired.timestamp() for p in scene.products].index(sample["s2_timestamp_clouds"])
        np.testing.assert_array_equal(sample["s2_holes_t"][..., 0], source["clm"][donor, 68:100, 32:64])
        assert (sample["s2_t"] == -10000).all()  # the real masks cover the whole crop
