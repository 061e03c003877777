"""Run the pipeline: capture each SOURCE, compute optical flow (when the model takes flow), run the model's
networks (two-stream: spatial and temporal) on sliding windows, fuse, and publish predictions on a ZeroMQ
PUB socket.

SOURCE is a webcam index (0), an rtsp:// or http(s):// URL, or a video file; prefix
`name=` to choose its topic name (cam1=rtsp://...). Predictions go to topic
`twostream/<name>/`, status to `twostream/<name>/status`.

Settings come from --config (see config.toml for every key); flags override them.
Exit status: 0 when every source ended cleanly, 1 when a source failed, 2 for bad input.

examples:
  twostream run assets/demo.mp4 --print
  twostream run --pace fast cam1=a.mp4 cam2=b.mp4 --publish tcp://127.0.0.1:6000
  twostream run 0 rtsp://user:pass@10.0.0.5/stream1
  twostream run --preview cam1=rtsp://10.0.0.5/stream1     # then `twostream view`
  twostream run --pace fast assets/demo.mp4 --annotate demo_labelled.mp4
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from stream.core.config import load_settings, override

DEFAULT_MODEL = "models/default"


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("sources", nargs="+", metavar="SOURCE", help="webcam index, rtsp/http(s) URL or video file")
    p.add_argument("--model", help=f"model bundle directory (default {DEFAULT_MODEL})")
    p.add_argument("--config", help="TOML settings file (default: built-in defaults, as in config.toml)")
    p.add_argument("--publish", metavar="ENDPOINT", help="ZeroMQ PUB endpoint (default tcp://127.0.0.1:5555)")
    p.add_argument("--pace", choices=("realtime", "fast"),
                   help="files only: realtime replays at the file's fps like a camera (may drop frames when "
                        "overloaded); fast processes every frame exactly once, as fast as possible")
    p.add_argument("--max-frames", type=int, metavar="N", help="stop each source after N frames")
    p.add_argument("--stride", type=int, metavar="S", help="a window closes every S frames (default 5)")
    p.add_argument("--engine", choices=("auto", "onnxruntime", "tensorrt", "triton"),
                   help="engine backend (default auto; triton: [engine] triton_url in --config)")
    p.add_argument("--threads", type=int, metavar="N", help="inference threads (0: let the engine decide)")
    p.add_argument("--print", action="store_true", dest="print_predictions",
                   help="also print each prediction (and end of stream) to stdout, one line each")
    p.add_argument("--json", action="store_true", help="with --print: print the JSON messages instead")
    p.add_argument("--preview", action="store_true",
                   help="also publish small JPEG previews on twostream/<name>/preview (for `twostream view`)")
    p.add_argument("--annotate", metavar="OUT.mp4",
                   help="one video file only: afterwards write the replayed video with the predictions drawn on it")
    p.add_argument("--flow-device", choices=("cpu", "cuda"),
                   help="where optical flow is computed (default cpu; [flow] in --config has the CUDA options)")
    talk = p.add_mutually_exclusive_group()
    talk.add_argument("-q", "--quiet", action="store_true", help="log warnings and errors only")
    talk.add_argument("-v", "--verbose", action="store_true",
                      help="also log details, including FFmpeg's and OpenCV's own messages from each stage")


def resolve_model(path: str | None) -> str:
    """The default bundle is found beside the package when not run from the repo root."""
    if path:
        return path
    if Path(DEFAULT_MODEL).is_dir():
        return DEFAULT_MODEL
    beside = Path(__file__).resolve().parents[2] / DEFAULT_MODEL
    return str(beside) if beside.is_dir() else DEFAULT_MODEL


def format_prediction(m: dict) -> str:
    if m.get("event") == "eos":
        extra = f"  error: {m['error']}" if m.get("error") else ""
        return (f"[{m['source']}] end of stream: {m['frames']} frames, {m['windows']} windows, "
                f"{m['dropped']} dropped{extra}")
    # one "name label score" per network of the bundle (two-stream: spatial ... | temporal ...)
    streams = " | ".join(f"{name} {x['label']} {x['score']:.2f}" for name, x in m["streams"].items())
    gap = f"  (after a gap of {m['gap']['frames']} frames)" if "gap" in m else ""
    return (f"[{m['source']}] #{m['seq']:<4d} frame {m['frame']:>5d}  {m['label']:<16s} {m['score']:.2f}   "
            f"{streams}   {m['latency_ms']:.0f} ms{gap}")


def main(args: argparse.Namespace) -> int:
    import json

    from stream.clients.annotate import check_annotate, write_annotated
    from stream.core.wire import check_endpoint
    from stream.runtime.sources import parse_sources
    from stream.runtime.supervisor import Pipeline, check_sources

    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                        format="twostream: %(message)s", stream=sys.stderr)
    if args.verbose:  # our logger only: stages forward FFmpeg/OpenCV chatter at debug level (stream.runtime.stage)
        logging.getLogger("twostream").setLevel(logging.DEBUG)
    settings = load_settings(args.config)
    model = args.model or (resolve_model(None) if settings.pipeline.model == DEFAULT_MODEL else None)
    flags = [("model", "pipeline", "model", model),
             ("pace", "pipeline", "pace", args.pace), ("max-frames", "pipeline", "max_frames", args.max_frames),
             ("stride", "pipeline", "stride", args.stride), ("flow-device", "flow", "device", args.flow_device),
             ("publish", "publish", "endpoint", args.publish),
             ("engine", "engine", "kind", args.engine), ("threads", "engine", "threads", args.threads),
             ("preview", "preview", "enabled", True if args.preview else None)]
    for flag, section, key, value in flags:
        if value is not None:
            settings = override(settings, section, key, value, f"--{flag}")
    check_endpoint(settings.publish.endpoint)
    specs = parse_sources(args.sources)
    check_sources(specs)
    annotate_to = check_annotate(args.annotate, specs) if args.annotate else None
    predictions: list[dict] = []

    def show(payload: dict) -> None:
        if annotate_to is not None and payload.get("event") == "prediction":
            predictions.append(payload)
        if args.print_predictions and payload.get("event") in ("prediction", "eos"):
            print(json.dumps(payload) if args.json else format_prediction(payload), flush=True)

    wanted = args.print_predictions or annotate_to is not None
    pipeline = Pipeline(specs, settings, on_message=show if wanted else None)
    summary = pipeline.run()
    if annotate_to is not None:
        eos = summary.eos.get(specs[0].name)
        n = write_annotated(specs[0].target, annotate_to, predictions, frames=eos["frames"] if eos else None)
        logging.getLogger("twostream").info("annotated %d frames (%d predictions) -> %s", n, len(predictions),
                                            annotate_to)
    for name, eos in summary.eos.items():
        if eos.get("error"):
            print(f"twostream run: source {name}: {eos['error']}", file=sys.stderr)
    for err in summary.errors:
        print(f"twostream run: {err}", file=sys.stderr)
    return 0 if summary.ok else 1
