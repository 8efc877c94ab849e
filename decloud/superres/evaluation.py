"""Evaluation of a super-resolution SavedModel on held-out records, under the Wald protocol, beside the
bicubic upsampling of the same degraded inputs (the baseline a user would otherwise use).

Per output and per band, on the pixels where the target and both estimates are valid, the scores of
:class:`decloud.models.scores.HoleScores` (every output pixel is one the method had to produce): MAE, RMSE,
PSNR from the pooled MSE (reflectance, data range 1), SSIM and SAM; and in the frequency domain, the radial
profiles of bicubic (the input upsampled), prediction and target, with FRR / FRO / FRU (%) per band and over
all bands.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from decloud.core.constants import S2_NODATA
from decloud.models.export import ServingModel
from decloud.models.model import SOURCE_BANDS, output_source
from decloud.models.registry import create_model
from decloud.models.scores import HoleScores, scorable
from decloud.sampling.tfrecords import make_dataset
from decloud.superres.frequency import frequency_scores, radial_profile
from decloud.superres.models import SuperresModel

BASELINE = "bicubic"
#: The bicubic twin of each architecture.
BICUBIC_TWINS = {"superres": "superres_bicubic", "sharpen": "sharpen_bicubic"}


def bicubic_twin(model: SuperresModel) -> SuperresModel:
    family = model.name.split("_")[0]
    params = {name: value for name, value in model.params.items() if name in ("with_20m_bands", "factor")}
    return create_model(BICUBIC_TWINS[family], **params)


class _Profiles:
    """Sums of per-band radial profiles of valid patches (a patch with no-data is left out of the spectra)."""

    def __init__(self, bands: int) -> None:
        self.sums: dict[str, np.ndarray] = {}
        self.bands = bands
        self.images = 0

    def update(self, images: dict[str, np.ndarray], valid: np.ndarray) -> None:
        for name, batch in images.items():
            profiles = np.stack(
                [[radial_profile(image[..., band]) for band in range(self.bands)] for image in batch[valid]]
            ) if valid.any() else None  # fmt: skip
            if profiles is not None:
                self.sums[name] = self.sums.get(name, 0) + profiles.sum(axis=0)
        self.images += int(valid.sum())

    def results(self, bands: list[str]) -> dict[str, Any]:
        if not self.images:
            return {}
        mean = {name: total / self.images for name, total in self.sums.items()}
        per_band = {
            band: vars(frequency_scores(mean[BASELINE][index], mean["model"][index], mean["target"][index]))
            for index, band in enumerate(bands)
        }
        pooled = {name: profiles.mean(axis=0) for name, profiles in mean.items()}
        overall = vars(frequency_scores(pooled[BASELINE], pooled["model"], pooled["target"]))
        return {
            "overall": overall,
            "per_band": per_band,
            "profiles": {name: profile.tolist() for name, profile in pooled.items()},
        }


def evaluate_superres(
    savedmodel: str | os.PathLike[str], test_records: str | os.PathLike[str], batch_size: int = 8
) -> dict[str, Any]:
    """Metrics of the SavedModel and of bicubic upsampling over every sample of ``test_records``."""
    serving = ServingModel(savedmodel)
    model = create_model(serving.description["model"], **serving.description.get("params", {}))
    baseline = bicubic_twin(model).model()
    outputs = model.output_names()
    accumulators = {
        method: {name: HoleScores(SOURCE_BANDS[output_source(name)]) for name in outputs}
        for method in ("model", BASELINE)
    }
    spectra = {name: _Profiles(len(SOURCE_BANDS[output_source(name)])) for name in outputs}
    samples = 0
    for sample in make_dataset(test_records, keys=model.record_keys(), batch_size=batch_size):
        inputs, targets = model.training_pair(sample)
        feed = {name: value.numpy() for name, value in inputs.items()}
        estimates = {"model": serving(feed), BASELINE: {k: np.asarray(v) for k, v in baseline(feed).items()}}
        for name in outputs:
            target = targets[name].numpy()
            for index, truth in enumerate(target):
                images = {method: estimates[method][name][index] for method in accumulators}
                scored = scorable(truth, np.ones(truth.shape[:2], dtype=bool), list(images.values()))
                for method, accumulator in accumulators.items():
                    accumulator[name].update(truth, images[method], scored)
            valid = (target != S2_NODATA).all(axis=(1, 2, 3))
            spectra[name].update(
                {"model": estimates["model"][name], BASELINE: estimates[BASELINE][name], "target": target}, valid
            )
        samples += len(next(iter(targets.values())))
    report_outputs = {}
    for name in outputs:
        bands = list(SOURCE_BANDS[output_source(name)])
        methods = {method: accumulator[name].results() for method, accumulator in accumulators.items()}
        report_outputs[name] = {"bands": bands, "methods": methods, "frequency": spectra[name].results(bands)}
    return {
        "savedmodel": str(Path(savedmodel)),
        "test_records": str(Path(test_records)),
        "model": model.name,
        "params": model.params,
        "protocol": f"Wald: inputs degraded x{model.wald_factor} from the records, targets the records",
        "samples": samples,
        "outputs": report_outputs,
    }


def format_superres_table(report: dict[str, Any]) -> str:
    """Per-band pooled PSNR and SSIM of the model and bicubic, the gain, and FRR / FRO / FRU."""
    lines = [f"{report['model']} on {report['test_records']} ({report['samples']} samples, {report['protocol']})"]
    for name, output in report["outputs"].items():
        model, bicubic = output["methods"]["model"], output["methods"][BASELINE]
        frequency = output["frequency"].get("per_band", {})
        lines.append(f"{name}")
        lines.append(
            "| band | PSNR model | PSNR bicubic | gain dB | SSIM model | SSIM bicubic | FRR % | FRO % | FRU % |"
        )
        lines.append("|---|---|---|---|---|---|---|---|---|")
        rows = [
            (band, model["per_band"][band], bicubic["per_band"][band], frequency.get(band)) for band in output["bands"]
        ]
        rows.append(("all", model["overall"], bicubic["overall"], output["frequency"].get("overall")))
        for band, ours, theirs, scores in rows:
            ssim = [f"{value:.4f}" if value is not None else "-" for value in (ours["ssim"], theirs["ssim"])]
            freq = [f"{scores[key]:.1f}" for key in ("frr", "fro", "fru")] if scores else ["-"] * 3
            gain = ours["psnr"] - theirs["psnr"]
            lines.append(
                f"| {band} | {ours['psnr']:.2f} | {theirs['psnr']:.2f} | {gain:+.2f} | "
                f"{ssim[0]} | {ssim[1]} | {' | '.join(freq)} |"
            )
    return "\n".join(lines)
