"""The CLI against a stopped server: every verb answers in one line with a non-zero exit."""

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tsforge.cli.parser import glue_key_values, parser
from tsforge.paths import CONFIG, EXAMPLES, ROOT
from tsforge.server import client, torchserve

VERBS = [
    ["predict", "--model", "digits", str(EXAMPLES / "mnist-7.png")],
    ["predict", "--model", "diabetes", "--inference-key", "WRONG", str(EXAMPLES / "diabetes.json")],
    ["models", "list"],
    ["models", "describe", "digits", "--card"],
    ["models", "register", "digits.mar"],
    ["models", "scale", "digits", "--workers", "2"],
    ["models", "default", "digits", "1.0"],
    ["models", "unregister", "digits"],
    ["serve", "status"],
    ["serve", "key"],
    ["serve", "health"],
]


@pytest.fixture(scope="module")
def stopped(tmp_path_factory):
    """The environment of a checkout whose server is not running, on ports nothing uses."""
    tmp = tmp_path_factory.mktemp("cli")
    config = torchserve.render_config(
        CONFIG, tmp / "cfg", tmp / "store", {k: torchserve.free_port() for k in torchserve.PORT_KEYS}
    )
    return {**os.environ, "TSFORGE_CONFIG": str(config), "TSFORGE_RUN_DIR": str(tmp / "run")}


def tsforge(args, env):
    exe = str(Path(sys.executable).with_name("tsforge"))
    return subprocess.run([exe, *args], env=env, capture_output=True, text=True, timeout=120)


def test_every_verb_says_the_server_is_not_running_without_a_traceback(stopped):
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda args: tsforge(args, stopped), VERBS))
    for args, r in zip(VERBS, results, strict=True):
        assert r.returncode != 0, args
        assert "Traceback" not in r.stderr + r.stdout, (args, r.stderr)
        if args[:2] != ["serve", "health"]:  # a health check answers by exit code alone
            assert "not reachable" in r.stderr or "not running" in r.stderr, (args, r.stderr)
            assert "make serve" in r.stderr


@pytest.mark.parametrize(
    "workers",
    [["--workers", "0"], ["--workers", "-1"], ["--workers", "10000"], ["--workers", "4", "--max-workers", "2"]],
)
def test_worker_counts_outside_the_documented_range_are_refused(stopped, workers):
    r = tsforge(["models", "scale", "digits", *workers], stopped)
    assert r.returncode == 2, r.stderr
    assert f"between 1 and {client.MAX_WORKERS}" in r.stderr or "is below workers" in r.stderr
    with pytest.raises(ValueError):
        client.check_workers(int(workers[1]), int(workers[3]) if len(workers) > 2 else None)


def test_make_clean_on_a_fresh_clone_sets_nothing_up(tmp_path):
    """No .venv: clean removes what builds wrote and never runs the bootstrap (no venv, no apt)."""
    (tmp_path / "artifacts").mkdir()
    (tmp_path / "model_store").mkdir()
    (tmp_path / "model_store" / "x.mar").write_bytes(b"")
    done = subprocess.run(
        ["make", "-f", str(ROOT / "Makefile"), "clean"], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "bootstrap" not in done.stdout + done.stderr and not (tmp_path / ".venv").exists()
    assert not (tmp_path / "artifacts").exists() and not list((tmp_path / "model_store").glob("*.mar"))


@pytest.mark.parametrize("key", ["-Xa1b2c3", "--b2c3d", "plainKey"])
def test_a_key_that_starts_with_a_dash_is_taken_as_the_keys_value(key):
    """TorchServe's keys are URL-safe base64: one in 64 starts with "-" and must still parse."""
    for argv, field in (
        (["verify", "http://127.0.0.1:1", "--inference-key", key], "inference_key"),
        (["models", "list", "--management-key", key, "--api-key", key], "management_key"),
        (["predict", "--model", "digits", "--inference-key", key, "x.png"], "inference_key"),
    ):
        assert getattr(parser().parse_args(glue_key_values(argv)), field) == key, argv


@pytest.mark.integration
def test_verify_against_an_endpoint_nobody_serves_says_so_in_one_line(built, stopped):
    r = tsforge(["verify", "http://127.0.0.1:1", "--store", str(built.store), "--inference-key", "-Xa1b2c3"], stopped)
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    assert r.stderr.strip().splitlines() == [
        "error: http://127.0.0.1:1 is not reachable: start the server (`make serve` or `make up`), or pass its URL"
    ]
