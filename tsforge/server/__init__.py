"""Server control and client: TorchServe started and stopped on a rendered config (torchserve),
the token-aware client, the container's foreground process (readiness, drain), its health check
and the frontend class that adds the Open Inference Protocol's health and metadata routes.
"""
