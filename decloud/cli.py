"""The umbrella command ``decloud <command> [flags]``: each command is a module with a ``main(argv)``
(the same one ``python -m <module>`` runs), imported only when its command is called."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from decloud.core.native_logs import VERBOSE_FLAG, quiet_tensorflow, verbose_requested

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
    "assess": "decloud.models.assess",
    "export-onnx": "decloud.models.export_onnx",
    "superres": "decloud.superres.superres_command",
    "superres-export-onnx": "decloud.superres.export_card",
    "demo": "decloud.demo.main",
    "demo-superres": "decloud.demo.superres_main",
    "sits-extract": "decloud.sits.extract",
    "sits-pretrain": "decloud.sits.pretrain_command",
    "sits-finetune": "decloud.sits.finetune_command",
    "sits-embed": "decloud.sits.embed_command",
    "sits-classify": "decloud.sits.classify_command",
    "sits-export-onnx": "decloud.sits.onnx_export",
}


def _usage() -> str:
    width = max(len(name) for name in COMMANDS)
    lines = [f"  {name:<{width}}  python -m {module}" for name, module in COMMANDS.items()]
    return "usage: decloud <command> [flags]  (decloud <command> --help for its flags)\n\ncommands:\n" + "\n".join(
        lines
    )


def _flag_row(action: argparse.Action) -> str:
    flags = ", ".join(f"`{flag}`" for flag in action.option_strings)
    if action.nargs == 0:
        value = ""
    elif action.choices is not None and not isinstance(action.choices, range):
        value = " | ".join(str(choice) for choice in action.choices)
    else:
        metavar = action.metavar or action.dest.upper()
        value = (" ".join(metavar) if isinstance(metavar, tuple) else metavar) + (
            " ..." if action.nargs in ("+", "*") else ""
        )
    default = "required" if action.required else ("" if action.default in (None, False) else f"`{action.default}`")
    return f"| {flags} | {_markdown(value)} | {default} | {_markdown(action.help or '')} |"


def _markdown(text: str) -> str:
    """Plain help text made safe inside a Markdown table (no HTML tags, no column breaks)."""
    return text.replace("<", "&lt;").replace(">", "&gt;").replace("|", "\\|").replace("\n", " ")


def reference_markdown() -> str:
    """The reference of every command and flag, generated from the parsers themselves (``docs/commands.md``
    is this text; a test keeps the two equal)."""
    lines = [
        "# Command reference",
        "",
        "Generated from the commands' parsers by `python -m decloud.cli --reference > docs/commands.md`.",
        "",
        f"Every command also takes `{VERBOSE_FLAG}`: it shows the start-up messages of TensorFlow and CUDA, "
        "hidden by default.",
    ]
    for name, module in COMMANDS.items():
        parser = importlib.import_module(module).build_parser()
        lines += ["", f"## `decloud {name}`", "", f"Also `python -m {module}`. {_markdown(parser.description)}", ""]
        lines += ["| flag | value | default | meaning |", "|---|---|---|---|"]
        lines += [_flag_row(action) for action in parser._actions if action.option_strings and action.dest != "help"]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    if not arguments or arguments[0] in ("-h", "--help"):
        print(_usage())
        return 0 if arguments else 2
    if arguments[0] == "--reference":
        print(reference_markdown(), end="")
        return 0
    command, *rest = arguments
    if command not in COMMANDS:
        print(f"decloud: unknown command {command!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    quiet_tensorflow(verbose_requested(rest))  # before the command's module, which may import TensorFlow
    return importlib.import_module(COMMANDS[command]).main(rest)


if __name__ == "__main__":
    sys.exit(main())
