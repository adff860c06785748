"""Packaging: a gated export becomes a TorchServe archive. build (train, export, gate, archive,
skipped when up to date, by fingerprint), archive (torch-model-archiver), dependencies (which
repository files a module imports: fingerprints and the handler files an archive ships).
"""
