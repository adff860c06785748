"""The one TorchServe entry point for every archive (`--handler handlers/handler.py`).

The input kind and contract in the archive's model-config.yaml pick the codec; the rest is
BatchHandler's. TorchServe takes the one class this module defines.
"""

from handlers.base import BatchHandler


class Handler(BatchHandler):
    """Decode, batch, infer and encode for whichever kind the archive declares."""
