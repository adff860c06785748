"""The one way the project writes a file: to a temporary sibling, then renamed over the target.

A reader (TorchServe, the image build, a second command) sees the old file or the new one,
never half of one, and a failed write leaves the old file as it was. Every layer uses it, so
it lives at the bottom and imports nothing of the project.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any


def write_atomically(path: Path, write: Callable[[Path], None]) -> None:
    """`write(tmp)` to a fresh temporary path beside `path`, then rename it to `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    # mkstemp makes it owner-only; the file gets the permissions a plain write would (umask).
    umask = os.umask(0)
    os.umask(umask)
    tmp.chmod(0o666 & ~umask)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text(path: Path, text: str, mode: int | None = None) -> None:
    """`text` into `path` atomically; `mode` sets its permissions before it appears."""

    def write(tmp: Path) -> None:
        tmp.write_text(text)
        if mode is not None:
            tmp.chmod(mode)

    write_atomically(path, write)


def write_json(path: Path, data: Any) -> None:
    """`data` as indented JSON, atomically."""
    write_text(path, json.dumps(data, indent=2) + "\n")
