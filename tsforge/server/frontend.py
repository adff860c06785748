"""TorchServe's frontend with the Open Inference Protocol's health and metadata routes
(frontend/OpenInferenceProtocolRequestHandler.java: why a class and not a plugin is said there).

TorchServe starts Java with "." (its run folder) first on the class path, so a class compiled
into the run folder replaces the frontend's own of the same name. `install` puts it there before
each start. The compiled class is cached per source and frontend jar; the Docker image compiles it
in a build stage and points TSFORGE_FRONTEND_CLASSES at the result (it has no compiler)."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from tsforge.paths import ROOT

SOURCE = ROOT / "frontend" / "OpenInferenceProtocolRequestHandler.java"
PACKAGE_ROOT = "org"  # the top folder of the compiled package tree
COMPILED = Path("org/pytorch/serve/http/api/rest") / SOURCE.with_suffix(".class").name
JAVAC_PACKAGE = "openjdk-17-jdk-headless"


class FrontendError(RuntimeError):
    """The frontend class could not be compiled."""


def jar() -> Path:
    import ts  # the torchserve package: its frontend jar is what the class compiles against

    return Path(ts.__file__).parent / "frontend" / "model-server.jar"


def classes() -> Path:
    """The folder holding the compiled package tree (`org/...`), compiled here when missing."""
    if os.environ.get("TSFORGE_FRONTEND_CLASSES"):
        return Path(os.environ["TSFORGE_FRONTEND_CLASSES"])
    if not SOURCE.is_file():  # an install without the repository's frontend/ folder
        raise FrontendError(f"{SOURCE} is missing: set TSFORGE_FRONTEND_CLASSES to a compiled tree")
    # The jar by its size and time (46 MB: not read at every start), the source by its bytes.
    stat = jar().stat()
    digest = hashlib.sha256(SOURCE.read_bytes() + f"{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:16]
    out = Path(sys.prefix) / "tsforge-frontend" / digest
    if not (out / COMPILED).is_file():
        compile_to(out)
    return out


def compile_to(out: Path) -> None:
    """javac into a scratch folder beside `out`, then one rename: never a half-written tree.
    `out` must not exist yet, or be what another process compiled from the same source."""
    javac = shutil.which("javac")
    if javac is None:
        raise FrontendError(f"javac not found: install {JAVAC_PACKAGE} (scripts/bootstrap.sh does)")
    out.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(dir=out.parent, prefix=".javac-"))
    try:
        done = subprocess.run(
            [javac, "-nowarn", "--release", "17", "-cp", str(jar()), "-d", str(scratch), str(SOURCE)],
            capture_output=True,
            text=True,
            timeout=300,
        )
        if done.returncode != 0:
            raise FrontendError(f"javac failed on {SOURCE.name}:\n{done.stderr[-2000:]}")
        try:
            scratch.rename(out)
        except OSError:  # another process compiled the same source first, else a wrong `out`
            if not (out / COMPILED).is_file():
                raise FrontendError(f"cannot write the compiled class to {out}: it exists") from None
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def install(run_dir: Path) -> None:
    """Put the compiled class where TorchServe, started in `run_dir`, loads it first."""
    target = run_dir / PACKAGE_ROOT
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(classes() / PACKAGE_ROOT, target)


if __name__ == "__main__":  # `python -m tsforge.server.frontend OUT`: compile into OUT (the image's build stage)
    compile_to(Path(sys.argv[1]))
