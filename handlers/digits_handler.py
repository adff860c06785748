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

    def decode(self, request):
        return digits_codec.decode_request(request, self.limits)[None, :, :]  # add the channel

    def encode(self, output_row):
        return digits_codec.encode_response(output_row, self.labels)
