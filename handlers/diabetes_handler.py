"""TorchServe entry point for `diabetes` (one class per file, as TorchServe requires)."""

from handlers import diabetes_codec
from handlers.base import BatchHandler


class DiabetesHandler(BatchHandler):
    def decode(self, payload):
        return diabetes_codec.decode_request(payload, self.limits)

    def encode(self, outputs, decoded):
        return diabetes_codec.encode_outputs(outputs, decoded, self.model_name)
