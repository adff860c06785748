"""The shipped handler with its per-batch metrics switched off: the benchmark's measure of
what emitting them costs (HandlerBatches, HandlerPreprocessMs, HandlerInferenceMs,
HandlerPostprocessMs: four metric lines per batch, each parsed by the frontend). Never shipped."""

from handlers.handler import Handler


class QuietHandler(Handler):
    @staticmethod
    def _count(context, name, dimension, value) -> None:
        return None

    @staticmethod
    def _time(context, name, seconds) -> None:
        return None
