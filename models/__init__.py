"""Model modules: one per model, each declaring `SPEC` (training/specs.py); see the README guide."""
