"""The Open Inference Protocol's health and metadata routes, answered beside TorchServe.

TorchServe 0.12.0 serves POST /v2/models/{name}/infer but answers 404 for the protocol's
GET /v2, /v2/health/live, /v2/health/ready, /v2/models/{name}[/versions/{v}] and
.../ready. A frontend plugin cannot add them: TorchServe hands every /v2/... request, infer
included, to a plugin registered for "v2", and releases the body before the plugin runs
(pytorch/serve#2595), so infer would break. So each container answers them on its readiness
port (tsforge.server.foreground) and the gateway routes those GETs there; infer stays TorchServe's.

What they say comes from TorchServe itself (which models and versions are registered, whether
a worker is ready: its management API on loopback) and from the archive in the model store
(the tensors are its codec's, derived from the contract in its model-config.yaml).
"""

from __future__ import annotations

import hmac
import json
import re
import zipfile
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from handlers import contracts
from handlers.codecs import codec_for
from tsforge.server.client import Client, ServerError
from tsforge.server.torchserve import ServeError, Server

ROUTE = re.compile(
    r"^/v2(?:/health/(?P<health>live|ready)|/models/(?P<model>[^/]+)(?:/versions/(?P<version>[^/]+))?(?P<ready>/ready)?)?/?$"
)
MANIFEST = "MAR-INF/MANIFEST.json"
# handlers.runtime picks ONNX Runtime for this suffix, TorchScript otherwise; the names are Triton's.
PLATFORMS = {".onnx": "onnxruntime_onnx"}
TORCHSCRIPT_PLATFORM = "pytorch_libtorch"
# A model-config.yaml or manifest is a few KiB; a bigger entry is a mistake, never read whole.
MAX_ENTRY_BYTES = 1 << 20

Answer = tuple[int, dict[str, Any]]


def is_route(path: str) -> bool:
    return ROUTE.match(path.split("?", 1)[0]) is not None


def error(status: int, code: str, detail: str) -> Answer:
    # The protocol's error body is {"error": message}; "detail" as every other answer here has.
    return status, {"error": code, "detail": detail}


def authorized(server: Server, authorization: str | None) -> bool:
    """With TorchServe's tokens on (compose), the same inference key its own routes take;
    off (Swarm: the gateway checked its key), anyone who reaches this port."""
    if not server.tokens or not server.key_file.exists():
        return True
    try:
        key = server.keys()["inference"]
        expired = server.key_expired("inference")
    except (OSError, ValueError, KeyError):
        return False
    return not expired and hmac.compare_digest((authorization or "").encode(), f"Bearer {key}".encode())


def answer(path: str, authorization: str | None, server: Server, store: Path, ready: Callable[[], bool]) -> Answer:
    """(status, JSON body) for a GET of `path`, which `is_route` accepted."""
    if not authorized(server, authorization):
        return error(401, "unauthorized", "send Authorization: Bearer <the inference key>")
    route = ROUTE.match(path.split("?", 1)[0])
    if route is None:
        return error(404, "not_found", f"no Open Inference Protocol route {path[:200]!r}")
    if route["model"] is None:
        if route["health"] == "live":
            return 200, {"live": True}
        if route["health"] == "ready":
            ok = ready()
            return (200 if ok else 503), {"ready": ok}
        return 200, {"name": "tsforge", "version": "1", "extensions": ["binary_tensor_data"]}
    return model_answer(route["model"], route["version"], bool(route["ready"]), server, store)


def model_answer(name: str, version: str | None, ready_route: bool, server: Server, store: Path) -> Answer:
    client = Client(server, timeout=5)
    try:
        every = client.describe(name, "all")
        chosen = client.describe(name, version)[0]
    except ServerError as e:
        if e.status == 404:
            what = f"model {name!r}" + (f" has no version {version!r}" if version else " is not registered")
            return error(404, "model_not_found", what)
        return error(503, "server_unavailable", f"TorchServe's management API answered {e.status}")
    except ServeError:
        return error(503, "server_unavailable", "TorchServe is not reachable")
    if ready_route:
        ok = any(w.get("status") == "READY" for w in chosen.get("workers", []))
        return (200 if ok else 503), {"name": name, "ready": ok}
    url = str(chosen.get("modelUrl", ""))
    try:
        tensors = archive_metadata(archive_path(url, store))
    except (OSError, KeyError, ValueError, TypeError, zipfile.BadZipFile, yaml.YAMLError, ImportError) as e:
        return error(500, "metadata_unreadable", f"the archive {url[:200]!r} could not be read ({type(e).__name__})")
    return 200, {"name": name, "versions": sorted({str(d["modelVersion"]) for d in every}), **tensors}


def archive_path(url: str, store: Path) -> Path | None:
    """The registered archive, only when it lies in the model store (TorchServe's own rule)."""
    name = url.removeprefix("file://")
    candidate = (store / name).resolve()
    root = store.resolve()
    return candidate if candidate.is_file() and candidate.is_relative_to(root) else None


def archive_metadata(path: Path | None) -> dict[str, Any]:
    """{"platform", "inputs", "outputs"} of the archive at `path` (cached while its file is unchanged)."""
    if path is None:
        return {"platform": "", "inputs": [], "outputs": []}
    stat = path.stat()
    return dict(_metadata(path, stat.st_size, stat.st_mtime_ns))


@lru_cache(maxsize=64)
def _metadata(path: Path, size: int, mtime_ns: int) -> dict[str, Any]:
    with zipfile.ZipFile(path) as mar:
        manifest = json.loads(_read(mar, MANIFEST))["model"]
        settings = yaml.safe_load(_read(mar, manifest["configFile"]))["handler"]
    contract = contracts.from_yaml(settings)
    tensors = codec_for(contract.kind).oip_metadata(contract)
    serialized = str(manifest["serializedFile"])
    platform = PLATFORMS.get(Path(serialized).suffix, TORCHSCRIPT_PLATFORM)
    return {"platform": platform, **tensors}


def _read(mar: zipfile.ZipFile, name: str) -> bytes:
    if mar.getinfo(name).file_size > MAX_ENTRY_BYTES:
        raise ValueError(f"{name} is over {MAX_ENTRY_BYTES} bytes")
    return mar.read(name)
