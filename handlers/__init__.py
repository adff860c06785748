"""TorchServe's handler entry point (`handler.py`) and the pure codecs it adapts.

A codec (`image_codec`, `tabular_codec`, one per input kind, over `codec`, `oip`, `answers`)
never imports `ts`: tests call it directly, and the model logic could move to another server
unchanged. `contracts` holds what a model declares about its input and output.
"""
