"""The `triton` engine: a bundle network served by a Triton Inference Server over gRPC (KServe v2).

`[engine] kind = "triton"` sends each batch to `<triton_model_prefix>spatial` / `...temporal` on
`triton_url` (models made by `twostream export-triton`). tritonclient is imported only here and only
when this engine is used: a runtime with another engine never needs it (`pip install twostream[triton]`).

Trust, then verify: before the first batch (and again after every outage, since the server that
comes back may be another one) the engine checks that the server is live, the model is ready, its
input/output names, types and dims equal the local ONNX file's, and its config parameters carry the
SHA-256 of the local ONNX file and labels. At start a failure is a one-line error naming what differs;
while running, any failure to get an answer raises engines.base.EngineUnavailable, which the
inference stage turns into dropped (live) or delayed (files) windows (stream.runtime.outage).
"""
from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import numpy as np

from engines.base import EngineUnavailable
from engines.triton_repo import PARAM_LABELS_SHA, PARAM_ONNX_SHA, NetworkSpec, bundle_networks, network_spec
from stream.core.errors import BundleError, ConfigError

_NUMPY = {"TYPE_FP32": np.float32, "TYPE_FP16": np.float16, "TYPE_UINT8": np.uint8}
_WIRE = {"TYPE_FP32": "FP32", "TYPE_FP16": "FP16", "TYPE_UINT8": "UINT8"}


def parse_triton_url(url: str) -> tuple[str, bool]:
    """("host:port", tls) from grpc://host:port (plain) or grpcs://host:port (TLS)."""
    parts = urlsplit(url)
    if parts.scheme not in ("grpc", "grpcs") or not parts.hostname or parts.path not in ("", "/") or parts.query:
        raise ConfigError(f"[engine] triton_url = {url!r}: expected grpc://host:port or grpcs://host:port")
    try:
        port = parts.port or 8001
    except ValueError:
        raise ConfigError(f"[engine] triton_url = {url!r}: bad port") from None
    if parts.username or parts.password:
        raise ConfigError("[engine] triton_url: credentials in the URL are not supported (use TLS client certificates)")
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"{host}:{port}", parts.scheme == "grpcs"


def _pem_file(path: str, key: str) -> str | None:
    """The path, checked to be a readable PEM file (tritonclient opens it itself)."""
    if not path:
        return None
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"[engine] {key} = {path!r}: cannot read ({exc.strerror})") from None
    if b"-----BEGIN" not in data:
        raise ConfigError(f"[engine] {key} = {path!r}: not a PEM file")
    return path


def _dims(values) -> tuple[int, ...]:
    return tuple(int(v) for v in values)  # as_json gives int64 dims as strings


class TritonEngine:
    """One bundle network on a Triton server. Same interface as the local engines (engines.base.Engine)."""

    backend = "triton"

    def __init__(self, onnx_path: str | Path, network: str, labels, *, url: str, model_name: str,
                 timeout: float = 5.0, ca_file: str = "", cert_file: str = "", key_file: str = "",
                 verify: bool = True):
        self.path = Path(onnx_path)
        self.url = url
        self.model_name = model_name
        self.timeout = float(timeout)
        self._address, self._tls = parse_triton_url(url)
        self._pems = (_pem_file(ca_file, "triton_ca_file"), _pem_file(key_file, "triton_key_file"),
                      _pem_file(cert_file, "triton_cert_file"))
        if (self._pems[0] or self._pems[1] or self._pems[2]) and not self._tls:
            raise ConfigError(f"[engine] triton_url = {url!r}: TLS files are set, so use grpcs://")
        if bool(self._pems[1]) != bool(self._pems[2]):
            raise ConfigError("[engine] triton_key_file and triton_cert_file go together (client certificate)")
        self.spec: NetworkSpec = network_spec(self.path, network, labels)
        self.input_names = tuple(t.name for t in self.spec.inputs)
        self.input_shapes = tuple(t.dims for t in self.spec.inputs)
        self.input_dtypes = tuple(np.dtype(_NUMPY[t.data_type]) for t in self.spec.inputs)
        self.input_shape = self.input_shapes[0]
        self.input_dtype = self.input_dtypes[0]
        self.num_outputs = int(self.spec.output.dims[0])
        self.max_batch = 0  # run() splits by the server's max_batch_size itself
        self._server_max_batch = 0
        self._client = None
        self._grpc = None
        self.choice_reason = f"[engine] kind = triton: {url}"
        if verify:
            try:
                self.verify()
            except EngineUnavailable as exc:
                raise ConfigError(str(exc)) from None

    # connection ----------------------------------------------------------------------------------
    def _connect(self):
        if self._client is None:
            try:
                import tritonclient.grpc as grpcclient
            except ImportError:
                raise ConfigError("[engine] kind = triton needs tritonclient: "
                                  "pip install 'twostream[triton]'") from None
            self._grpc = grpcclient
            ca, key, cert = self._pems
            self._client = grpcclient.InferenceServerClient(
                self._address, ssl=self._tls, root_certificates=ca, private_key=key, certificate_chain=cert)
        return self._client

    def close(self) -> None:
        if self._client is not None:
            try:
                self._client.close()
            except Exception:  # noqa: BLE001 - closing a broken channel
                pass
        self._client = None
        self._server_max_batch = 0

    def _unavailable(self, what: str, exc: Exception | None = None) -> EngineUnavailable:
        self.close()  # a fresh channel next time: gRPC's own reconnect backoff grows to minutes
        detail = ""
        if exc is not None:
            detail = f" ({(exc.message() if hasattr(exc, 'message') else str(exc)) or type(exc).__name__})"
            detail = detail.splitlines()[0][:200]
        return EngineUnavailable(f"{self.url}: {what}{detail}")

    # checks --------------------------------------------------------------------------------------
    def verify(self) -> None:
        """Server live, model ready, and the same network as the local file; else a one-line error."""
        client = self._connect()
        from tritonclient.utils import InferenceServerException

        name, t = self.model_name, self.timeout
        try:
            if not client.is_server_live(client_timeout=t):
                raise self._unavailable("server is not live")
            if not client.is_model_ready(name, client_timeout=t):
                raise self._unavailable(f"model {name!r} is not ready (missing from the repository or failed to "
                                        f"load; export it with `twostream export-triton`)")
            cfg = client.get_model_config(name, as_json=True, client_timeout=t)["config"]
        except InferenceServerException as exc:
            raise self._unavailable("server not reachable", exc) from None
        where = f"{self.url}: model {name!r} differs from {self.path}"
        inputs, outputs = cfg.get("input", []), cfg.get("output", [])
        if len(inputs) != len(self.spec.inputs) or len(outputs) != 1:
            raise BundleError(f"{where}: {len(inputs)} inputs and {len(outputs)} outputs, expected "
                              f"{len(self.spec.inputs)} and 1")
        pairs = [("input", r, t) for r, t in zip(inputs, self.spec.inputs, strict=True)]
        pairs.append(("output", outputs[0], self.spec.output))
        for kind, remote, local in pairs:
            if remote.get("name") != local.name:
                raise BundleError(f"{where}: {kind} name {remote.get('name')!r} != {local.name!r}")
            if remote.get("data_type") != local.data_type:
                raise BundleError(f"{where}: {kind} type {remote.get('data_type')} != {local.data_type}")
            if _dims(remote.get("dims", [])) != local.dims:
                raise BundleError(f"{where}: {kind} shape {list(_dims(remote.get('dims', [])))} != {list(local.dims)}")
        params = {k: v.get("string_value", "") for k, v in cfg.get("parameters", {}).items()}
        for key, local, what in ((PARAM_ONNX_SHA, self.spec.onnx_sha256, "ONNX content hash"),
                                 (PARAM_LABELS_SHA, self.spec.labels_sha256, "labels hash")):
            remote = params.get(key, "")
            if remote != local:
                shown = remote[:12] + "..." if remote else "missing (not exported by twostream export-triton)"
                raise BundleError(f"{where}: {what} {shown} != {local[:12]}... (re-export with "
                                  f"`twostream export-triton` and reload the server)")
        max_batch = int(cfg.get("max_batch_size", 0))
        if max_batch < 1:
            raise BundleError(f"{where}: max_batch_size is {max_batch}; the engine needs a batching model")
        self._server_max_batch = max_batch

    # inference -----------------------------------------------------------------------------------
    def run(self, *inputs: np.ndarray) -> np.ndarray:
        if len(inputs) != len(self.input_shapes):
            raise ValueError(f"{self.path.name}: {len(inputs)} input(s) given, the network takes "
                             f"{len(self.input_shapes)}")
        n = len(inputs[0])
        for name, shape, x in zip(self.input_names, self.input_shapes, inputs, strict=True):
            if x.shape[1:] != shape or len(x) != n:
                raise ValueError(f"{self.path.name}: input {name!r} {x.shape} does not match (B={n}, {shape})")
        if not self._server_max_batch:
            try:
                self.verify()
            except BundleError as exc:  # the server came back with other models: do not trust its answers
                self.close()
                raise EngineUnavailable(str(exc)) from None
        xs = [np.ascontiguousarray(x, dtype=d) for x, d in zip(inputs, self.input_dtypes, strict=True)]
        step = self._server_max_batch
        outs = [self._infer([x[i:i + step] for x in xs]) for i in range(0, len(xs[0]), step)]
        return outs[0] if len(outs) == 1 else np.concatenate(outs)

    def _infer(self, xs: list[np.ndarray]) -> np.ndarray:
        from tritonclient.utils import InferenceServerException

        grpc = self._grpc
        client = self._connect()
        feed = []
        for spec, x in zip(self.spec.inputs, xs, strict=True):
            inp = grpc.InferInput(spec.name, list(x.shape), _WIRE[spec.data_type])
            inp.set_data_from_numpy(x)
            feed.append(inp)
        try:
            result = client.infer(self.model_name, feed, outputs=[grpc.InferRequestedOutput(self.spec.output.name)],
                                  client_timeout=self.timeout)
        except InferenceServerException as exc:
            raise self._unavailable(f"inference on {self.model_name!r} failed", exc) from None
        out = result.as_numpy(self.spec.output.name)
        if out is None or out.shape != (len(xs[0]), self.num_outputs):
            raise self._unavailable(f"{self.model_name!r} answered a malformed output "
                                    f"{None if out is None else out.shape}")
        return out.astype(np.float32, copy=False)


def open_triton(bundle, network: str, options, *, verify: bool = True) -> TritonEngine:
    """A TritonEngine for one of `bundle`'s networks from [engine] settings (stream.core.config.EngineSettings)."""
    onnx_path = dict(bundle_networks(bundle))[network]
    return TritonEngine(
        onnx_path, network, bundle.labels, url=getattr(options, "triton_url", "grpc://127.0.0.1:8001"),
        model_name=getattr(options, "triton_model_prefix", "twostream_") + network,
        timeout=getattr(options, "triton_timeout", 5.0), ca_file=getattr(options, "triton_ca_file", ""),
        cert_file=getattr(options, "triton_cert_file", ""), key_file=getattr(options, "triton_key_file", ""),
        verify=verify)
