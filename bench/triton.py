"""The benchmark's second peer: Triton Inference Server through PyTriton (bench/triton_peer.py),
serving an archive's own exported file with the archive's own codec, like the LitServe peer.

PyTriton 0.7.0 pins numpy<2 and runs on Debian's python3.11 (its Python backend stub links
libpython3.11), so it lives in its own venv, `.venv-triton`, built once by `ensure_venv`;
`triton_server` starts the peer on free loopback ports and always stops it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

from bench import baselines, codec_model
from training.specs import ServingConfig
from tsforge.paths import ROOT
from tsforge.server import torchserve

VENV = ROOT / ".venv-triton"
PYTHON = Path("/usr/bin/python3.11")
# Exact versions: PyTriton and its numpy<2, our torch (from the local wheelhouse), and what the
# codecs import (handlers/codecs/*, handlers/runtime.py, tokens.py, audio_decode.py) at the
# versions pyproject.toml pins for ours.
PYTRITON = "0.7.0"
PINS = (
    f"nvidia-pytriton=={PYTRITON}",
    "tritonclient==2.73.0",
    "numpy==1.26.4",
    "torch==2.13.0",
    "pyyaml==6.0.3",
    "pillow==13.0.0",
    "orjson==3.13.0",
    "onnxruntime==1.32.0",
    "tokenizers==0.23.3",
    "soundfile==0.14.0",
    "soxr==1.1.0",
)
MARKER = VENV / ".installed"  # the pins the venv holds: the same pins again cost nothing


def ensure_venv() -> Path:
    """The Triton venv, created and installed with PINS unless it already holds them."""
    wanted = "\n".join(PINS) + "\n"
    if MARKER.exists() and MARKER.read_text() == wanted:
        return VENV
    if not PYTHON.exists():
        raise RuntimeError(f"{PYTHON} is missing: PyTriton needs Debian's Python 3.11 (`apt-get install python3.11 python3.11-venv libpython3.11`)")  # fmt: skip
    # The caller's PYTHONPATH (the repository, with tsforge's metadata) would leak into pip's view.
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    if not (VENV / "bin" / "python").exists():
        print(f"triton: creating {VENV} with {PYTHON}", flush=True)
        subprocess.run([str(PYTHON), "-m", "venv", str(VENV)], env=env, check=True)
    print(f"triton: installing {' '.join(PINS)} (torch from the wheelhouse; a few minutes)", flush=True)
    # -qq: errors only (pip 23 warns about each absent extra-index folder)
    subprocess.run([str(VENV / "bin" / "pip"), "install", "-qq", *PINS], env=env, check=True)
    MARKER.write_text(wanted)
    print(f"triton: {VENV} ready", flush=True)
    return VENV


def request_body(example: Path, content_type: str, out: Path) -> Path:
    """The Open Inference Protocol JSON for one example: the peer body (bench.codec_model) as
    the one BYTES element of the `request` input."""
    body = codec_model.peer_body(example.read_bytes(), content_type)
    out.write_text(json.dumps({"inputs": [{"name": "request", "shape": [1, 1], "datatype": "BYTES", "data": [body]}]}))
    return out


@contextlib.contextmanager
def triton_server(model_dir: Path, serving: ServingConfig, log_file: Path, timeout: float = 180.0) -> Iterator[str]:
    """PyTriton (bench/triton_peer.py) on an unpacked archive with `serving`'s workers (as
    instances), threads and batching, on free loopback ports; yields the model's infer URL and
    always stops it."""
    python = ensure_venv() / "bin" / "python"
    http, grpc, metrics = (torchserve.free_port() for _ in range(3))
    cmd = [str(python), "-m", "bench.triton_peer", "--model-dir", str(model_dir), "--http-port", str(http),
           "--grpc-port", str(grpc), "--metrics-port", str(metrics), "--instances", str(serving.workers),
           "--threads", str(serving.threads_per_worker), "--batch", str(serving.batch_size),
           "--delay-us", str(max(serving.max_batch_delay_ms, 0) * 1000)]  # fmt: skip
    with contextlib.ExitStack() as stack:
        home = stack.enter_context(tempfile.TemporaryDirectory(prefix="pytriton-"))
        # PyTriton's workspace (else ~/.cache/pytriton); PYTHONPATH only ours, never the caller's
        # site-packages (numpy 2).
        env = {**os.environ, "PYTRITON_HOME": home, "PYTHONPATH": str(ROOT)}
        with open(log_file, "ab") as log:
            proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
        stack.callback(_stop, proc)
        baselines.wait_until_ready(proc, f"http://127.0.0.1:{http}/v2/models/peer/ready", "Triton", log_file, timeout)
        yield f"http://127.0.0.1:{http}/v2/models/peer/infer"


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM to the peer's Python process alone: it stops tritonserver, which unloads the model
    and its backend stubs and cleans up (signalling them directly can leave /tmp and /dev/shm
    behind). Then SIGKILL to whatever of the group is left, after 30 s at most."""
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        pass
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
