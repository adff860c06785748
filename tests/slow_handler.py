"""A tabular handler that sleeps `-age` seconds when the first feature (age) is negative: a stand-in for an
inference that outlives responseTimeout, archived only by the fault tests."""

import time

from handlers.handler import Handler


class SlowHandler(Handler):
    def decode(self, payload):
        decoded = super().decode(payload)
        if decoded.rows[0, 0] < 0:
            time.sleep(float(-decoded.rows[0, 0]))
        return decoded
