"""Training, export and gates: data -> train -> evaluate -> export -> gates."""
