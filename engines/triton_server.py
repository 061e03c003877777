"""Start a real, local `tritonserver` for tests and `twostream bench` (not for production).

Production runs NVIDIA's tritonserver container on a GPU host (docs/scale-out.md). On CPU
machines the `nvidia-pytriton` wheel bundles tritonserver 2.51 with only the python backend;
`make triton-server` installs it into its own venv (.venv/tritonserver: it pins numpy<2, which
the project's venv does not). Measured requirements for it to start (Python 3.11):
  - the venv's bin first on PATH (the python backend stub runs that interpreter's packages);
  - LD_LIBRARY_PATH holding <site-packages>/nvidia_pytriton.libs and the interpreter's LIBDIR;
  - a backend directory with libtriton_python.so next to python_backend_stubs/3.11/triton_python_backend_stub.
A killed server can leave /dev/shm/triton_python_backend_shm_region_* behind: stop() removes the
regions this server created.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from stream.core.ports import free_port  # also imported from here by the Triton tests

DEFAULT_VENV = Path(__file__).resolve().parents[1] / ".venv" / "tritonserver"
SHM_GLOB = "triton_python_backend_shm_region_*"


@dataclass(frozen=True)
class TritonInstall:
    venv: Path
    binary: Path
    backends: Path  # a directory holding python/ (libtriton_python.so + stub)
    env: dict


def find_install(venv: str | Path | None = None) -> tuple[TritonInstall | None, str]:
    """(install, "") when the tritonserver venv is usable, else (None, why not) for a skip/err message."""
    venv = Path(venv or os.environ.get("TWOSTREAM_TRITON_VENV", DEFAULT_VENV))
    py = venv / "bin" / "python"
    if not py.exists():
        return None, f"{venv}: no tritonserver venv (run `make triton-server`)"
    try:
        out = subprocess.run([str(py), "-c", "import site, sys, sysconfig; print(site.getsitepackages()[0]); "
                              "print(sysconfig.get_config_var('LIBDIR')); print('%d.%d' % sys.version_info[:2])"],
                             capture_output=True, text=True, timeout=60, check=True).stdout.split("\n")
    except (subprocess.SubprocessError, OSError) as exc:
        return None, f"{py}: cannot run ({exc})"
    site, libdir, version = Path(out[0]), out[1], out[2]
    root = site / "pytriton" / "tritonserver"
    binary = root / "bin" / "tritonserver"
    stub = root / "python_backend_stubs" / version / "triton_python_backend_stub"
    if not binary.exists() or not stub.exists():
        return None, f"{site}: nvidia-pytriton's tritonserver or its Python {version} stub is missing"
    backends = venv / "twostream-backends"
    target = backends / "python"
    if not (target / "triton_python_backend_stub").exists():
        tmp = backends / f".python.{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(root / "backends" / "python", tmp, ignore=shutil.ignore_patterns("__pycache__"))
        shutil.copy2(stub, tmp / "triton_python_backend_stub")
        try:
            tmp.rename(target)
        except OSError:  # another process won the race: its copy is identical
            shutil.rmtree(tmp, ignore_errors=True)
    env = dict(os.environ)
    env["PATH"] = f"{venv / 'bin'}:{env.get('PATH', '')}"
    env["LD_LIBRARY_PATH"] = ":".join(p for p in (str(site / "nvidia_pytriton.libs"), libdir,
                                                  env.get("LD_LIBRARY_PATH", "")) if p)
    env.pop("PYTHONPATH", None)
    env["VIRTUAL_ENV"] = str(venv)
    return TritonInstall(venv=venv, binary=binary, backends=backends, env=env), ""


def _shm_regions() -> set[str]:
    return {p.name for p in Path("/dev/shm").glob(SHM_GLOB)} if Path("/dev/shm").is_dir() else set()


class LocalTritonServer:
    """One tritonserver process on 127.0.0.1 serving `repo` (gRPC only), with the given config variant.

    tls: {"cert": PEM path, "key": PEM path, "ca": PEM path} serves gRPC over TLS (url becomes grpcs://);
    with "mutual": True the server also requires a client certificate signed by "ca".
    """

    def __init__(self, install: TritonInstall, repo: str | Path, *, config_name: str = "python",
                 grpc_port: int | None = None, log_path: str | Path | None = None, tls: dict | None = None):
        self.install = install
        self.repo = Path(repo)
        self.config_name = config_name
        self.grpc_port = grpc_port or free_port()
        self.log_path = Path(log_path) if log_path else None
        self.tls = tls
        self.proc: subprocess.Popen | None = None
        self._shm_before: set[str] = set()
        self._mine: set[str] = set()

    @property
    def url(self) -> str:
        return f"{'grpcs' if self.tls else 'grpc'}://127.0.0.1:{self.grpc_port}"

    def start(self, timeout: float = 60.0) -> "LocalTritonServer":
        self._shm_before = _shm_regions()
        cmd = [str(self.install.binary), f"--model-repository={self.repo}",
               f"--backend-directory={self.install.backends}", "--allow-http=false", "--allow-metrics=false",
               "--grpc-address=127.0.0.1", f"--grpc-port={self.grpc_port}", "--log-verbose=0",
               "--exit-on-error=true", "--strict-readiness=true", "--exit-timeout-secs=3"]
        if self.config_name:
            cmd.append(f"--model-config-name={self.config_name}")
        if self.tls:
            cmd += ["--grpc-use-ssl=true", f"--grpc-server-cert={self.tls['cert']}",
                    f"--grpc-server-key={self.tls['key']}", f"--grpc-root-cert={self.tls['ca']}"]
            if self.tls.get("mutual"):
                cmd.append("--grpc-use-ssl-mutual=true")
        out = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL
        self.proc = subprocess.Popen(cmd, env=self.install.env, stdout=out, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        if out is not subprocess.DEVNULL:
            out.close()
        try:
            self.wait_ready(timeout)
        except BaseException:
            self.kill()  # never leave a server (and its /dev/shm regions) behind a failed start
            raise
        return self

    def wait_ready(self, timeout: float = 60.0) -> float:
        """Seconds until the server answers ready (every model loaded); RuntimeError when it exits or times out."""
        import tritonclient.grpc as grpcclient

        t0 = time.monotonic()
        if self.tls:  # readiness over TLS too (with the client certificate when the server wants one)
            pem = {k: str(v) for k, v in self.tls.items() if k in ("ca", "client_cert", "client_key")}  # file paths
            client = grpcclient.InferenceServerClient(f"127.0.0.1:{self.grpc_port}", ssl=True,
                                                      root_certificates=pem.get("ca"),
                                                      private_key=pem.get("client_key"),
                                                      certificate_chain=pem.get("client_cert"))
        else:
            client = grpcclient.InferenceServerClient(f"127.0.0.1:{self.grpc_port}")
        try:
            while time.monotonic() - t0 < timeout:
                if self.proc is not None and self.proc.poll() is not None:
                    raise RuntimeError(f"tritonserver exited with code {self.proc.returncode} (log: {self.log_path})")
                try:
                    if client.is_server_ready(client_timeout=1.0):
                        self._mine |= _shm_regions() - self._shm_before
                        return time.monotonic() - t0
                except Exception:  # noqa: BLE001 - not listening yet
                    pass
                time.sleep(0.05)
        finally:
            client.close()
        raise RuntimeError(f"tritonserver not ready after {timeout:.0f} s (log: {self.log_path})")

    def kill(self) -> None:
        """SIGKILL the server and its python-backend stubs (an outage, as a crash would cause)."""
        if self.proc is None:
            return
        self._mine |= _shm_regions() - self._shm_before
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(10)
        self.proc = None
        self._cleanup_shm()

    def stop(self) -> None:
        if self.proc is None:
            return
        self._mine |= _shm_regions() - self._shm_before
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(15)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)
        self.proc = None
        self._cleanup_shm()

    def _cleanup_shm(self) -> None:
        for name in self._mine:
            try:
                (Path("/dev/shm") / name).unlink()
            except FileNotFoundError:
                pass
        self._mine = set()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


if __name__ == "__main__":  # manual use: python -m engines.triton_server REPO  (serves until Ctrl-C)
    inst, why = find_install()
    if inst is None:
        sys.exit(why)
    server = LocalTritonServer(inst, sys.argv[1]).start()
    print(f"tritonserver ready on {server.url}", flush=True)
    try:
        server.proc.wait()
    except KeyboardInterrupt:
        server.stop()
