"""The shipped handler with its batch figures switched off: the benchmark's measure of what
keeping them costs (HandlerBatches and the three stage timers, summed in the worker and sent
once a second: handlers/batch_metrics.py) and of the per-request rejection counters. Never shipped.
One class only: TorchServe loads a handler module's single class."""

from handlers.handler import Handler


class QuietHandler(Handler):
    def initialize(self, context) -> None:
        super().initialize(context)
        self.tally.add = lambda size, stage_seconds: None  # nothing summed, so nothing sent

    @staticmethod
    def _count(context, name, dimension, value) -> None:
        return None
