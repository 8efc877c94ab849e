"""Peak memory of ``decloud export-onnx`` on a small model (random weights), beside the peak of merely
loading the same SavedModel and running it once on a 96-pixel sample (the reference, measured in the same
run): the export's own cost is the difference. Each step runs in a fresh process whose peak RSS is read
with ``resource.getrusage(RUSAGE_CHILDREN)`` by a wrapper process of its own. Target: export peak < 1.5 GB.

    python benchmarks/bench_export_memory.py [--model crga_os2_unet] [--params '{"with_dem": true}']
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

#: Runs a command and prints the peak RSS (kB) of its process tree's largest member.
WRAPPER = "import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, capture_output=True); " \
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"  # fmt: skip

EXPORT = """
import json, sys
from decloud.models.export import export_savedmodel
from decloud.models.registry import create_model
model = create_model(sys.argv[1], **json.loads(sys.argv[2]))
export_savedmodel(model.model(), model, sys.argv[3])
"""

LOAD_AND_RUN = """
import sys
from decloud.models.export import ServingModel
serving = ServingModel(sys.argv[1])
serving(serving.probe_inputs(96, batch=2))
"""


def peak_kb(command: list[str]) -> int:
    done = subprocess.run([sys.executable, "-c", WRAPPER, *command], check=True, capture_output=True, text=True)
    return int(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="crga_os2_unet")
    parser.add_argument("--params", default="{}", help="model parameters, JSON")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        savedmodel = Path(folder) / "savedmodel"
        subprocess.run([sys.executable, "-c", EXPORT, args.model, args.params, str(savedmodel)], check=True,
                       capture_output=True)  # fmt: skip
        size_mb = sum(path.stat().st_size for path in (savedmodel / "variables").iterdir()) / 2**20
        reference = peak_kb([sys.executable, "-c", LOAD_AND_RUN, str(savedmodel)])
        export = peak_kb([sys.executable, "-m", "decloud.cli", "export-onnx", "--savedmodel", str(savedmodel),
                          "--output", str(Path(folder) / "model.onnx")])  # fmt: skip
    print(json.dumps({
        "model": args.model, "params": json.loads(args.params), "variables_mb": round(size_mb, 1),
        "load_and_run_peak_mb": round(reference / 1024), "export_onnx_peak_mb": round(export / 1024),
        "ratio_export_to_load_and_run": round(export / reference, 2),
    }))  # fmt: skip


if __name__ == "__main__":
    main()
