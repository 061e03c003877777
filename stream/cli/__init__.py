"""The `twostream` command: one subcommand per module, imported lazily so the runtime never pulls in torch."""
from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys

from stream.core.errors import TwostreamError

# (name, module, one-line help). Each module defines configure(parser) and main(args) -> int.
# Modules must not import torch at top level: `twostream --help` works on a camera box.
COMMANDS = [
    ("run", "stream.cli.run", "run the pipeline on sources (webcam index, rtsp/http URL, video file)"),
    ("subscribe", "stream.cli.subscribe", "print predictions published by a running pipeline"),
    ("extract", "train.cmd_extract", "precompute frames and optical flow for a dataset"),
    ("train", "train.cmd_train", "train the spatial or temporal stream"),
    ("eval", "train.cmd_eval", "video-level accuracy of a bundle or checkpoints on a dataset"),
    ("export", "train.cmd_export", "export checkpoints to an ONNX model bundle"),
    ("family", "train.cmd_family", "train/export/eval/bench the other families: convfusion, hidden, i3d, r2plus1d"),
    ("make-sequences", "train.cmd_sequences", "stitch labelled clips into annotated continuous streams"),
    ("fit", "train.cmd_fit", "one command from labelled videos to an evaluated bundle (with a none threshold)"),
    ("eval-stream", "stream.cli.eval_stream", "streaming quality: window accuracy, switch delay, flicker"),
    ("bench", "stream.cli.bench", "benchmark stages and the whole pipeline against baselines"),
    ("view", "stream.cli.view", "serve a live web view of predictions and previews"),
    ("doctor", "engines.cmd_doctor", "list engines, GPUs and flow backends this machine can use"),
    ("build-engines", "engines.cmd_build", "build TensorRT plans for a bundle (NVIDIA GPU)"),
    ("export-triton", "engines.cmd_export_triton", "export a bundle as a Triton Inference Server model repository"),
    ("bridge", "stream.cli.bridge", "forward predictions, changes and status to MQTT (Home Assistant discovery)"),
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="twostream",
        description="Real-time two-stream action recognition: cameras in, fused predictions out on ZeroMQ.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module_name, help_text in COMMANDS:
        if importlib.util.find_spec(module_name) is None:
            continue
        module = importlib.import_module(module_name)
        doc = (module.__doc__ or help_text).strip()
        p = sub.add_parser(name, help=help_text, description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
        module.configure(p)
        p.set_defaults(_main=module.main)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_main", None):
        parser.print_help()
        return 2
    try:
        return int(args._main(args) or 0)
    except TwostreamError as exc:
        print(f"twostream {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
