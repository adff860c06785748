"""TorchServe handlers and the pure request codecs they adapt.

The codec modules (`codec`, `digits_codec`, `diabetes_codec`) never import `ts`: tests call
them directly, and the model logic could move to another server unchanged.
"""
