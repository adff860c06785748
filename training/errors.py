"""Why a build step stopped: light to import (no torch), so the CLI can name the cause of any
failure without loading the training code up front."""

from __future__ import annotations

from typing import Any


class BuildStopped(RuntimeError):
    """A build step refused to go on; its message says which and why."""


class ExportFailed(BuildStopped):
    """The exporter could not write or check a model; the message says which and why."""


class WeightsError(BuildStopped):
    """The weights file is missing, unreadable or does not fit the network: the message says which."""


class GateFailed(BuildStopped):
    """Raised by `training.gates.enforce`; its message names the gate, the measured value and the threshold."""

    def __init__(self, result: Any) -> None:  # a training.gates.GateResult (not imported: it needs torch)
        super().__init__(f"gate '{result.gate}' failed: {result.detail}")
        self.result = result
