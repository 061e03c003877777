"""Export a model bundle as a Triton Inference Server model repository (one model per network).

REPO gets `<prefix>spatial` and `<prefix>temporal`, each with a production config.pbtxt
(platform onnxruntime_onnx, or tensorrt_plan with --tensorrt-gpu when the bundle holds a valid
plan built for that GPU), dynamic batching, an instance group (GPU unless --kind cpu), inputs and
outputs named and shaped from the ONNX files, the labels, and the networks' SHA-256 in the config
parameters (the `triton` engine refuses a server whose models differ from the local bundle).
A test-only variant, configs/python.pbtxt, runs the same ONNX file in Triton's python backend
(`tritonserver --model-config-name=python`, used by the tests on machines without Triton's ONNX backend).

Re-exporting the same bundle changes nothing; a different model of the same name is refused
unless --force.

examples:
  twostream export-triton models/default triton-repo
  docker run --gpus all -p 8001:8001 -v $PWD/triton-repo:/models nvcr.io/nvidia/tritonserver:24.10-py3 \\
      tritonserver --model-repository=/models
  twostream run --engine triton --config site.toml rtsp://cam1/stream   # [engine] triton_url = "grpc://gpu-host:8001"
"""
from __future__ import annotations

import argparse

from engines.triton_repo import export_triton


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("bundle", help="model bundle directory (spatial.onnx, temporal.onnx, labels.txt, bundle.toml)")
    p.add_argument("repo", help="Triton model repository directory (created if missing)")
    p.add_argument("--prefix", default="twostream_", help="model name prefix (default twostream_); the run's "
                   "[engine] triton_model_prefix must match")
    p.add_argument("--max-batch", type=int, default=16, metavar="N", help="max_batch_size of each model (16)")
    p.add_argument("--queue-delay-us", type=int, default=500, metavar="US",
                   help="dynamic batcher: microseconds a request may wait for others to join its batch (500)")
    p.add_argument("--kind", choices=("gpu", "cpu"), default="gpu", help="instance_group kind (default gpu)")
    p.add_argument("--instances", type=int, default=1, metavar="N", help="model instances per device (1)")
    p.add_argument("--tensorrt-gpu", default="", metavar="NAME",
                   help="use the bundle's TensorRT plans built for the GPU whose name contains NAME "
                        "(platform tensorrt_plan; the server's TensorRT must match the plan's)")
    p.add_argument("--force", action="store_true", help="replace different models of the same name")


def main(args: argparse.Namespace) -> int:
    result = export_triton(args.bundle, args.repo, prefix=args.prefix, max_batch=args.max_batch,
                           queue_delay_us=args.queue_delay_us, kind=args.kind, count=args.instances,
                           tensorrt_gpu=args.tensorrt_gpu, force=args.force)
    for name, state in result.models.items():
        print(f"{result.repo / name}: {state} ({result.platform[name]}, test variant: --model-config-name=python)")
    return 0
