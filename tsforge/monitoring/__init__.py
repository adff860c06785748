"""Monitoring: the Prometheus rules that turn the workers' bucket counts into drift scores and
alerts (rules), and what `tsforge monitor` reads back from Prometheus (watch)."""
