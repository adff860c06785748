# A stand-in for python:3.11-slim-bookworm where no registry is reachable: Debian's own
# Python 3.11 on a debootstrapped bookworm root (`tsforge docker build` imports it as ROOT).
ARG ROOT=debian:bookworm-slim
# hadolint ignore=DL3006
FROM ${ROOT}
# hadolint ignore=DL3008
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
 && rm -rf /var/lib/apt/lists/*
