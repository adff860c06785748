"""Model definitions: one module per model, each with its config dataclass and no I/O."""
