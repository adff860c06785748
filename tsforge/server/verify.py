"""`tsforge verify`: replay each archive's held-out sample through a running endpoint (a host
TorchServe, the compose gateway, a Swarm service) and compare the answers with what the gated
export gave at build time (training.replay).

Each archive's signature is checked before its sample is trusted. The sample is sent to the
archive's own version (`/predictions/<model>/<version>`), and the answer must name that version
(the x-model-version header), so a store that differs from what runs shows up either way.
"""

from __future__ import annotations

import json
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from training.replay import REPLAY, compare, request_of
from tsforge.packaging import signing
from tsforge.server.client import ServerError


class Disagreement(RuntimeError):
    """An endpoint answered a replay otherwise than the gated export did (or not at all)."""


@dataclass
class Outcome:
    archive: str
    model: str
    version: str
    problems: list[str] = field(default_factory=list)
    worst: float = float("nan")
    check: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0

    def line(self) -> str:
        head = f"{self.archive} ({self.model} {self.version})"
        if self.problems:
            listed = "\n    ".join(self.problems[:20])
            more = f"\n    ... and {len(self.problems) - 20} more" if len(self.problems) > 20 else ""
            return f"DISAGREES {head}: {len(self.problems)} problem(s)\n    {listed}{more}"
        measure, limit = next(iter(self.check.items()))
        what = "lowest cosine" if measure == "min_cosine" else "largest |diff|"
        return f"agrees    {head}: {what} {self.worst:.3g} (limit {limit:g}), {self.seconds * 1000:.0f} ms"


def replays(store: Path, models: list[str] | None = None) -> list[tuple[Path, dict[str, Any]]]:
    """(archive, replay sample) for every archive in `store` (or those serving `models`), each
    signature verified first: an unverified archive's sample proves nothing."""
    archives = sorted(store.glob("*.mar"))
    if not archives:
        raise FileNotFoundError(2, "no archives to verify against", str(store))
    signing.verify(archives)
    found = []
    for path in archives:
        with zipfile.ZipFile(path) as z:
            if REPLAY not in z.namelist():
                raise ValueError(
                    f"{path.name} has no replay sample ({REPLAY}): rebuild it with `tsforge build --force`"
                )
            doc = json.loads(z.read(REPLAY))
        if not models or doc["model"] in models:
            found.append((path, doc))
    missing = sorted(set(models or []) - {doc["model"] for _, doc in found})
    if missing:
        raise ValueError(f"no archive in {store} serves {', '.join(missing)}")
    return found


def replay(url: str, archive: Path, doc: dict[str, Any], key: str | None, timeout: float = 60) -> Outcome:
    """Send one archive's sample to `url` and compare the answer with the recorded one."""
    outcome = Outcome(archive.name, doc["model"], doc["version"], check=doc["check"])
    body, headers = request_of(doc)
    if key:
        headers["Authorization"] = f"Bearer {key}"
    started = time.perf_counter()
    try:
        r = requests.post(
            f"{url.rstrip('/')}/predictions/{doc['model']}/{doc['version']}",
            data=body,
            headers=headers,
            timeout=timeout,
        )
    except requests.RequestException as e:
        outcome.problems.append(f"no answer from {url}: {type(e).__name__}: {str(e)[:200]}")
        return outcome
    outcome.seconds = time.perf_counter() - started
    if r.status_code != 200:  # in the server's own words: "HTTP 404 ModelNotFoundException: ..."
        outcome.problems.append(str(ServerError(r.status_code, r.text)))
        return outcome
    from handlers.base import VERSION_HEADER  # the handler's module loads the runtimes: only here

    served = r.headers.get(VERSION_HEADER)
    if served != doc["version"]:
        outcome.problems.append(f"answered by version {served!r}, the archive is {doc['version']!r}")
    try:
        answer = r.json()
    except ValueError:
        answer = r.text[:200]
    problems, outcome.worst = compare(doc, answer)
    outcome.problems += problems
    return outcome


def verify(url: str, store: Path, key: str | None, models: list[str] | None = None) -> list[Outcome]:
    found = replays(store, models)
    try:  # any answer will do (a 400 for the key...): something serves there
        requests.get(f"{url.rstrip('/')}/ping", headers={"Authorization": f"Bearer {key}"} if key else {}, timeout=10)
    except requests.ConnectionError:  # nothing listens: no archive's replay could say more
        raise Disagreement(
            f"{url} is not reachable: start the server (`make serve` or `make up`), or pass its URL"
        ) from None
    return [replay(url, path, doc, key) for path, doc in found]


def report(url: str, store: Path, key: str | None, models: list[str] | None = None) -> list[Outcome]:
    """`verify`, one line per archive printed; raises Disagreement naming those that disagree."""
    outcomes = verify(url, store, key, models)
    for outcome in outcomes:
        print(outcome.line())
    failed = [o.archive for o in outcomes if o.problems]
    if failed:
        raise Disagreement(
            f"{url} does not answer as the gated exports of {', '.join(failed)} did: what runs is not what was gated"
        )
    print(f"all {len(outcomes)} archives answer at {url} as their gated exports did")
    return outcomes
