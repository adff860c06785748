"""TorchServe entry point for `diabetes` (one class per file, as TorchServe requires)."""

from handlers import diabetes_codec
from handlers.base import BatchHandler


class DiabetesHandler(BatchHandler):
    def decode(self, request):
        return diabetes_codec.decode_request(request, self.limits)

    def encode(self, output_row):
        return diabetes_codec.encode_response(output_row)
