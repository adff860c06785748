"""Python client for a running TorchServe: inference and the model lifecycle, token-aware.

Keys come from TorchServe's key_file.json by default (re-read on every call, so a rotation is
seen at once) or are given explicitly. TorchServe's keys expire after token_expiration_min;
when a key read from the file is refused and the file says it has expired, the client renews
it through the token API with the API key and retries once. A key the caller gave is never
renewed: renewal replaces the server's key for every client, so a wrong key must not do it.
Server errors surface as ServerError(status, message), an unreachable server as
ServeError, never a traceback.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import requests

from tsforge.packaging import signing
from tsforge.server.torchserve import ServeError, Server

# The most workers `models register` / `models scale` will ask for: more only thrashes a
# machine (each worker holds a model copy and its threads), and TorchServe accepts absurd or
# negative counts (min=max=-1 leaves the model with no worker at all).
MAX_WORKERS = 16

# What `register` takes: a file name in the store, never a path or URL (no "/", "..", ":").
ARCHIVE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*\.mar")
CONTENT_TYPES = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".json": "application/json",
    ".txt": "text/plain",
}


class ServerError(RuntimeError):
    """The server answered with an error status: shown as its status and message."""

    def __init__(self, status: int, body: str) -> None:
        try:
            doc = json.loads(body)
            message = doc.get("message") or doc.get("detail") or body
            kind = doc.get("type") or doc.get("error") or ""
        except (ValueError, AttributeError):
            message, kind = body, ""
        super().__init__(f"HTTP {status}{f' {kind}' if kind else ''}: {str(message).strip()[:500]}")
        self.status, self.kind, self.body = status, kind, body


class Client:
    def __init__(self, server: Server, keys: dict[str, str] | None = None, timeout: float = 60) -> None:
        self.server = server
        self.explicit_keys = dict(keys or {})
        self.timeout = timeout

    def key(self, kind: str) -> str:
        if kind in self.explicit_keys:
            return self.explicit_keys[kind]
        return self.server.keys()[kind]

    def _call(self, api: str, method: str, path: str, headers: dict | None = None, **kwargs: Any) -> requests.Response:
        base = self.server.inference_url if api == "inference" else self.server.management_url
        for attempt in (1, 2):
            auth = {**(headers or {}), **self._auth(api)}
            try:
                r = requests.request(method, f"{base}{path}", headers=auth, timeout=self.timeout, **kwargs)
            except requests.ConnectionError:
                raise ServeError(f"server not reachable at {base}: start it with `make serve`") from None
            except requests.Timeout:
                raise ServeError(f"no answer from {base}{path} within {self.timeout:g} s") from None
            refused = r.status_code == 400 and "InvalidKeyException" in r.text
            if not (attempt == 1 and refused and self._renew(api)):
                break
        if not r.ok:
            raise ServerError(r.status_code, r.text)
        return r

    def _auth(self, kind: str) -> dict[str, str]:
        """The Authorization header, or none when there is no key (token authorization off)."""
        if kind not in self.explicit_keys and not self.server.key_file.exists():
            return {}
        return {"Authorization": f"Bearer {self.key(kind)}"}

    def _renew(self, kind: str) -> bool:
        """Renew an expired `kind` key read from key_file.json, with the API key; else False.

        TorchServe answers the token API with an empty body and writes the new key only to
        key_file.json, so renewal needs that file. A key the caller passed is never renewed.
        """
        if kind in self.explicit_keys or not self.server.key_file.exists() or not self.server.key_expired(kind):
            return False
        r = requests.get(
            f"{self.server.management_url}/token",
            params={"type": kind},
            headers={"Authorization": f"Bearer {self.key('API')}"},
            timeout=self.timeout,
        )
        return r.ok

    # --- inference ----------------------------------------------------------------------
    def predict(self, model: str, body: bytes, content_type: str, version: str | None = None) -> Any:
        path = f"/predictions/{model}" + (f"/{version}" if version else "")
        return self._call("inference", "POST", path, data=body, headers={"Content-Type": content_type}).json()

    def predict_file(self, model: str, path: Path, version: str | None = None) -> Any:
        content_type = CONTENT_TYPES.get(path.suffix.lower(), "application/octet-stream")
        return self.predict(model, path.read_bytes(), content_type, version)

    def ping(self) -> dict[str, Any]:
        return self._call("inference", "GET", "/ping").json()

    # --- management ---------------------------------------------------------------------
    def register(
        self,
        archive: str,
        batch_size: int | None = None,
        max_batch_delay_ms: int | None = None,
        initial_workers: int = 1,
        synchronous: bool = True,
    ) -> dict[str, Any]:
        """Register `archive` (a .mar file name in the model store), once its signature verifies.

        A server on a private copy of its store (tsforge.packaging.signing.loadable_store) gets
        a verified copy of the archive first: what it loads is what was checked."""
        check_workers(initial_workers)
        if not ARCHIVE_NAME.fullmatch(archive):
            raise ValueError(
                f"register takes an archive's file name in the model store, e.g. digits.mar; got {archive[:80]!r}"
            )
        self.list()  # a server that is not running says so first
        loaded, source = self.server.model_store, self.server.source_store
        if loaded.resolve() == source.resolve():
            signing.verify([loaded / archive])
        else:
            signing.admit(source / archive, loaded)
        params: dict[str, Any] = {
            "url": archive,
            "initial_workers": initial_workers,
            "synchronous": str(synchronous).lower(),
        }
        if batch_size is not None:
            params["batch_size"] = batch_size
        if max_batch_delay_ms is not None:
            params["max_batch_delay"] = max_batch_delay_ms
        return self._call("management", "POST", "/models", params=params).json()

    def list(self) -> list[dict[str, Any]]:
        return self._call("management", "GET", "/models").json()["models"]

    def describe(self, model: str, version: str | None = None, customized: bool = False) -> list[dict[str, Any]]:
        path = f"/models/{model}" + (f"/{version}" if version else "")
        return self._call("management", "GET", path, params={"customized": str(customized).lower()}).json()

    def scale(self, model: str, min_workers: int, max_workers: int | None = None, version: str | None = None) -> dict:
        check_workers(min_workers, max_workers)
        path = f"/models/{model}" + (f"/{version}" if version else "")
        params = {"min_worker": min_workers, "max_worker": max_workers or min_workers, "synchronous": "true"}
        return self._call("management", "PUT", path, params=params).json()

    def set_default(self, model: str, version: str) -> dict[str, Any]:
        return self._call("management", "PUT", f"/models/{model}/{version}/set-default").json()

    def unregister(self, model: str, version: str | None = None) -> dict[str, Any]:
        path = f"/models/{model}" + (f"/{version}" if version else "")
        return self._call("management", "DELETE", path).json()


def healthy(server: Server) -> bool:
    """What health checks call: /ping, which needs the inference key in TorchServe 0.12. The
    key is renewed with the API key once it expires, so a working server stays healthy."""
    try:
        Client(server, timeout=5).ping()
        return True
    except (ServeError, ServerError, requests.RequestException, OSError, ValueError, KeyError):
        return False


def check_workers(min_workers: int, max_workers: int | None = None) -> None:
    """Refuse worker counts outside 1..MAX_WORKERS (and a maximum below the minimum)."""
    for what, n in (("workers", min_workers), ("max workers", max_workers)):
        if n is not None and not 1 <= n <= MAX_WORKERS:
            raise ValueError(f"{what} must be between 1 and {MAX_WORKERS}; got {n}")
    if max_workers is not None and max_workers < min_workers:
        raise ValueError(f"max workers ({max_workers}) is below workers ({min_workers})")


def pretty(answer: Any) -> str:
    return json.dumps(answer, indent=2)
