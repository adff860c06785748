"""What provenance costs per archive (tsforge.packaging.signing): signing it when it is built,
verifying it where it is loaded (`tsforge serve start`, `models register`, the container's
entrypoint) and, on a host, copying it into the server's private store first, against the
floor of any check of every byte: reading the file and hashing it once with SHA-256. Copies of
the shipped archives, signed with a throwaway key in a temporary folder.
"""

from __future__ import annotations

import hashlib
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tsforge.packaging import build, signing

REPEATS = 5


@dataclass
class ArchiveCost:
    archive: str
    megabytes: float
    hash_ms: float  # read and SHA-256 the file once: the floor
    sign_ms: float
    verify_ms: float
    copy_ms: float  # into a server's private store at start (on a host, where the store is writable)

    @property
    def ratio(self) -> float:
        return self.verify_ms / self.hash_ms


def _median_ms(run: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def _sha256(path: Path) -> bytes:
    with path.open("rb") as f:  # streamed, as a verifier would: no copy of the file in memory
        return hashlib.file_digest(f, "sha256").digest()


def _throwaway_key(folder: Path) -> tuple[Path, Path]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    private = folder / "private.pem"
    key = ec.generate_private_key(ec.SECP256R1())
    private.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return private, signing.write_public(private, folder / "public.pem")


def measure(store: Path, repeats: int = REPEATS) -> dict[str, Any]:
    costs = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        private, public = _throwaway_key(folder)
        for name in build.SERVED:
            archive = folder / f"{name}.mar"
            shutil.copy(store / archive.name, archive)
            sign_ms = _median_ms(lambda a=archive: signing.sign(a, private), repeats)
            problem = signing.problem(archive, [public])
            if problem is not None:
                raise RuntimeError(f"{archive.name} does not verify in the benchmark: {problem}")
            costs.append(
                ArchiveCost(
                    archive.name,
                    archive.stat().st_size / 1e6,
                    _median_ms(lambda a=archive: _sha256(a), repeats),
                    sign_ms,
                    _median_ms(lambda a=archive: signing.problem(a, [public]), repeats),
                    _median_ms(lambda a=archive: shutil.copy2(a, folder / "copy.mar"), repeats),
                )
            )
    return {"date": time.strftime("%Y-%m-%d"), "repeats": repeats, "archives": [asdict(c) for c in costs]}


def table(figures: dict[str, Any] | None) -> list[str]:
    """The report's and the README's lines: per archive, its size, the floor, signing and verifying."""
    if not figures:
        return ["(the published run predates the provenance measurement: `make bench` measures it)"]
    lines = [
        f"Measured {figures['date']}, median of {figures['repeats']} each.",
        "",
        "| archive | MB | SHA-256 of the file, ms (floor) | sign, ms | verify, ms | verify / floor | copy at start, ms |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    costs = [ArchiveCost(**c) for c in figures["archives"]]
    for c in costs:
        lines.append(
            f"| {c.archive} | {c.megabytes:.2f} | {c.hash_ms:.1f} | {c.sign_ms:.1f} | {c.verify_ms:.1f} | "
            f"{c.ratio:.1f}× | {c.copy_ms:.1f} |"
        )
    verify_all, copy_all = sum(c.verify_ms for c in costs), sum(c.copy_ms for c in costs)
    lines += [
        "",
        f"All {len(costs)} archives, as `tsforge serve start` checks them: verifying {verify_all:.0f} ms, "
        f"copying into the private store {copy_all:.0f} ms (the floor, hashing each once: "
        f"{sum(c.hash_ms for c in costs):.0f} ms). Below a few MB a verification is its fixed cost "
        "(reading the key and the signature), hence the large ratios of the small archives.",
    ]
    return lines
