"""A tabular handler whose model raises whenever a row of all 0.123 is in its forward pass: a
stand-in for a model that fails on one crafted input, archived only by the fault tests."""

import numpy as np

from handlers.handler import Handler

POISON = 0.123


class FailingHandler(Handler):
    def _forward(self, jobs):
        rows = np.concatenate([job.item.rows for job in jobs])
        if np.any(np.all(np.isclose(rows, POISON), axis=1)):
            raise RuntimeError("simulated kernel failure at 0xdeadbeef")
        return super()._forward(jobs)
