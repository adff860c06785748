"""HTTP client for a running TorchServe: token-authorised inference calls."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import requests

from tsforge.serve import Server


class ServerError(RuntimeError):
    """The server answered with an error status: shown as its status and message."""

    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"HTTP {status}: {body.strip()[:500]}")
        self.status = status
        self.body = body


def predict(
    server: Server, model: str, body: bytes, content_type: str, version: str | None = None, timeout: float = 30
) -> Any:
    url = f"{server.inference_url}/predictions/{model}" + (f"/{version}" if version else "")
    headers = {**server.headers("inference"), "Content-Type": content_type}
    r = requests.post(url, data=body, headers=headers, timeout=timeout)
    if not r.ok:
        raise ServerError(r.status_code, r.text)
    return r.json()


def predict_file(server: Server, model: str, path: Path, version: str | None = None) -> Any:
    """Send a file as the request body, its content type taken from the extension."""
    content_type = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".json": "application/json"}.get(
        path.suffix.lower(), "application/octet-stream"
    )
    return predict(server, model, path.read_bytes(), content_type, version)


def pretty(answer: Any) -> str:
    return json.dumps(answer, indent=2)
