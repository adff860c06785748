"""TorchServe entry point for `digits` (one class per file, as TorchServe requires)."""

import json
import os

from handlers import digits_codec
from handlers.base import BatchHandler


class DigitsHandler(BatchHandler):
    def load_extras(self) -> None:
        with open(os.path.join(self.model_dir, "index_to_name.json")) as f:
            names = json.load(f)
        self.labels = [names[str(i)] for i in range(len(names))]

    def decode(self, payload):
        return digits_codec.decode_request(payload, self.limits)

    def encode(self, outputs, decoded):
        return digits_codec.encode_outputs(outputs, decoded, self.labels, self.model_name)
