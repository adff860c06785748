# Every target calls the `tsforge` CLI; the logic lives there (and setup in scripts/bootstrap.sh).
BIN := .venv/bin

.PHONY: setup demo test bench serve stop status verify lint docker-check docker-build docker-test swarm-test clean

setup:
	@scripts/bootstrap.sh

demo: setup  ## every model: train or load, export (TorchScript, ONNX, int8 where declared), gate, archive, serve, one request per archive
	$(BIN)/tsforge demo

test: setup  ## unit tests and integration tests against a real TorchServe
	$(BIN)/ruff check .
	$(BIN)/pytest -q --durations=15

bench: setup  ## benchmark report in bench/results/<date>/ (QUICK=1: seconds per point)
	$(BIN)/tsforge bench $(if $(QUICK),--quick)

serve: setup  ## start TorchServe in the background on the archives in model_store/
	$(BIN)/tsforge serve start

stop: setup
	$(BIN)/tsforge serve stop

verify: setup  ## each archive's held-out sample, replayed through the running TorchServe (or URL=... KEY=...)
	$(BIN)/tsforge verify $(URL) $(if $(KEY),--inference-key "$(KEY)")

status: setup
	$(BIN)/tsforge serve status

docker-check: setup  ## hadolint, docker-compose config, references and ports (also part of `make test`)
	$(BIN)/pytest -q tests/test_docker.py

docker-build: setup  ## the TorchServe, gateway and Prometheus images (local Debian bases, host wheelhouse: no registry needed)
	$(BIN)/tsforge docker build

docker-test: setup  ## the compose deployment, live: runs the README's Docker commands, then tests the real containers
	$(BIN)/pytest -q --durations=10 -m docker tests/test_docker_live.py

swarm-test: setup  ## Swarm, live: replicas behind the gateway under load (failover, rolling update, scale); prints p50/p99
	$(BIN)/pytest -q --durations=10 -rP -m docker tests/test_swarm_live.py

lint: setup
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

clean:  ## stop TorchServe if it runs (on a fresh clone there is nothing to stop: no setup), then remove builds
	@if [ -x $(BIN)/tsforge ]; then $(BIN)/tsforge serve stop; fi
	rm -rf artifacts .serve model_store/*.mar
