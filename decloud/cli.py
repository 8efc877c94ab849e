"""The umbrella command ``decloud <command> [flags]``: each command is a module with a ``main(argv)``
(the same one ``python -m <module>`` runs), imported only when its command is called."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

#: Command name -> module providing ``build_parser()`` and ``main(argv)``.
COMMANDS: dict[str, str] = {
    "s2-prepare": "decloud.preprocessing.sentinel2_prepare",
    "s1-prepare": "decloud.preprocessing.sentinel1_prepare",
    "dem-prepare": "decloud.preprocessing.dem_prepare",
    "generate-roi-rasters": "decloud.preprocessing.generate_roi_rasters",
    "create-tfrecords": "decloud.models.create_tfrecords",
    "crga-processor": "decloud.production.crga_processor",
    "meraner-processor": "decloud.production.meraner_processor",
    "monthly-synthesis-processor": "decloud.production.monthly_synthesis_processor",
    "crga-timeseries-processor": "decloud.production.crga_timeseries_processor",
    "meraner-timeseries-processor": "decloud.production.meraner_timeseries_processor",
    "train": "decloud.models.train_from_tfrecords",
    "evaluate": "decloud.models.model_evaluation",
    "export-onnx": "decloud.models.export_onnx",
}


def _usage() -> str:
    width = max(len(name) for name in COMMANDS)
    lines = [f"  {name:<{width}}  python -m {module}" for name, module in COMMANDS.items()]
    return "usage: decloud <command> [flags]  (decloud <command> --help for its flags)\n\ncommands:\n" + "\n".join(
        lines
    )


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    if not arguments or arguments[0] in ("-h", "--help"):
        print(_usage())
        return 0 if arguments else 2
    command, *rest = arguments
    if command not in COMMANDS:
        print(f"decloud: unknown command {command!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    return importlib.import_module(COMMANDS[command]).main(rest)


if __name__ == "__main__":
    sys.exit(main())
