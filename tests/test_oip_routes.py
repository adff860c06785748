"""The Open Inference Protocol's health and metadata routes, answered on a real TorchServe's own
inference port (frontend/OpenInferenceProtocolRequestHandler.java, put in place by
tsforge.server.frontend at each start), read by tritonclient itself.

Through the gateway, with infer on the same address, in tests/test_docker_live.py.
"""

from __future__ import annotations

import json
import zipfile

import pytest
import requests

from models.registry import SPECS
from tests.conftest import HISTORY, running_torchserve, served_name
from tsforge.packaging import build
from tsforge.packaging.archive import OIP_METADATA
from tsforge.server import foreground

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def routes(served):
    """host:port of TorchServe's inference API, as tritonclient takes it."""
    return served.inference_url.removeprefix("http://")


def triton(url):
    import tritonclient.http

    return tritonclient.http.InferenceServerClient(url=url)


def test_tritonclient_reads_health_and_server_metadata(routes, served):
    client = triton(routes)
    assert client.is_server_live(headers=served.headers())
    assert client.is_server_ready(headers=served.headers())
    assert client.get_server_metadata(headers=served.headers())["extensions"] == ["binary_tensor_data"]
    for archive in build.SERVED:
        assert client.is_model_ready(archive, headers=served.headers()), archive


def test_model_metadata_is_the_contract_and_the_runtime_of_each_archive(routes, served):
    client = triton(routes)
    name = served_name("digits", "torchscript")
    digits = client.get_model_metadata(name, headers=served.headers())
    assert digits["name"] == name and digits["platform"] == "pytorch_libtorch"
    assert digits["inputs"] == [{"name": "pixels", "datatype": "FP32", "shape": [-1, 28, 28]}]
    assert digits["outputs"] == [
        {"name": "probabilities", "datatype": "FP32", "shape": [-1, 10]},
        {"name": "label", "datatype": "INT64", "shape": [-1]},
    ]
    text = client.get_model_metadata(served_name("minilm", "onnx"), headers=served.headers())
    assert text["platform"] == "onnxruntime_onnx"
    assert text["inputs"] == [{"name": "text", "datatype": "BYTES", "shape": [-1]}]
    assert text["outputs"] == [{"name": "embedding", "datatype": "FP32", "shape": [-1, 384]}]
    rows = client.get_model_metadata("diabetes", headers=served.headers())
    assert rows["inputs"][0]["shape"] == [-1, len(SPECS["diabetes"].contract.features)]
    assert rows["outputs"] == [{"name": "prediction", "datatype": "FP32", "shape": [-1]}]
    version = rows["versions"][0]
    assert client.get_model_metadata("diabetes", version, headers=served.headers())["versions"] == [version]
    assert client.is_model_ready("diabetes", version, headers=served.headers())


def test_every_archive_declares_the_tensors_its_codec_answers(routes, served, built):
    """The metadata's outputs are the names and types an infer answer carries, for every archive."""
    import numpy as np
    import tritonclient.http

    client = triton(routes)
    for archive in build.SERVED:
        meta = client.get_model_metadata(archive, headers=served.headers())
        (declared,) = meta["inputs"]
        rows = 2  # or, for a recording ([1, -1]), two chunks of samples
        shape = [rows * 512 if d == -1 and i else rows if d == -1 else d for i, d in enumerate(declared["shape"])]
        tensor = tritonclient.http.InferInput(declared["name"], shape, declared["datatype"])
        if declared["datatype"] == "BYTES":
            tensor.set_data_from_numpy(np.array(["a text", "another"], dtype=object))
        elif declared["datatype"] == "INT64":  # item ids: the example history, padded with -1
            ids = np.full(shape, -1, np.int64)
            ids[:, : len(HISTORY)] = HISTORY
            tensor.set_data_from_numpy(ids)
        else:
            tensor.set_data_from_numpy(np.full(shape, 0.25, np.float32))
        asked = [tritonclient.http.InferRequestedOutput(o["name"]) for o in meta["outputs"]]  # optional ones too
        answer = client.infer(archive, [tensor], outputs=asked, headers=served.headers())  # the same address
        for output in meta["outputs"]:
            got = answer.get_output(output["name"])
            assert got is not None and got["datatype"] == output["datatype"], (archive, output, got)
            # Every fixed dimension as declared, and the rows where the first one varies with them.
            fixed = all(d in (-1, g) for d, g in zip(output["shape"], got["shape"], strict=True))
            assert len(output["shape"]) == len(got["shape"]) and fixed, (archive, output, got)
            if declared["shape"][0] == -1:
                assert got["shape"][0] == rows, (archive, output, got)
        assert len(answer.get_response()["outputs"]) == len(meta["outputs"])


def test_unknown_models_and_routes_and_a_wrong_key_are_refused_with_json(routes, served):
    base = f"http://{routes}"
    r = requests.get(f"{base}/v2/models/no-such-model", headers=served.headers(), timeout=10)
    assert r.status_code == 404 and r.json()["error"] == "model_not_found", r.text
    r = requests.get(f"{base}/v2/models/digits/versions/99.9", headers=served.headers(), timeout=10)
    assert r.status_code == 404 and "99.9" in r.json()["detail"], r.text
    r = requests.get(f"{base}/v2/models/no-such-model/versions/1.0/ready", headers=served.headers(), timeout=10)
    assert r.status_code == 404 and "is not registered" in r.json()["detail"], r.text
    r = requests.get(f"{base}/v2/models/digits/config", headers=served.headers(), timeout=10)
    assert r.status_code == 404 and r.json()["code"] == 404, r.text  # Triton's route, not the protocol's
    r = requests.post(f"{base}/v2/health/ready", headers=served.headers(), timeout=10)
    assert r.status_code == 405 and r.json()["error"] == "method_not_allowed", r.text
    assert r.headers["Allow"] == "GET, HEAD"
    r = requests.head(f"{base}/v2/models/digits/ready?x=1", headers=served.headers(), timeout=10)
    assert r.status_code == 200 and not r.content, r.text
    for headers in ({}, {"Authorization": "Bearer not-the-key"}):  # TorchServe's own key check: 400
        r = requests.get(f"{base}/v2/models/digits", headers=headers, timeout=10)
        assert r.status_code == 400 and r.json()["type"] == "InvalidKeyException", r.text
    assert not triton(routes).is_server_ready()  # tritonclient without the key


def test_model_metadata_is_the_archives_entry_written_from_its_contract(routes, served, built):
    """What GET /v2/models/<name> says is the archive's oip-metadata.json, derived at build time."""
    for name in build.SERVED:
        with zipfile.ZipFile(built.store / f"{name}.mar") as mar:
            written = json.loads(mar.read(OIP_METADATA))
        answered = requests.get(f"http://{routes}/v2/models/{name}", headers=served.headers(), timeout=10).json()
        assert answered == {"name": name, "versions": ["1.0"], **written}, name


def test_a_draining_replica_is_not_ready_but_still_live(routes, served):
    client = triton(routes)
    flag = served.run_dir / foreground.FLAG
    flag.touch()
    try:
        assert client.is_server_live(headers=served.headers())
        assert not client.is_server_ready(headers=served.headers())
    finally:
        flag.unlink()
    assert client.is_server_ready(headers=served.headers())


def test_ready_only_while_a_worker_has_its_model_loaded(built, tmp_path):
    """A model scaled to no worker: neither it nor the server is ready (TorchServe's own /ping
    still says healthy); scaled back to one worker, both are."""
    with running_torchserve(built.store, tmp_path / "run") as server:
        client = triton(server.inference_url.removeprefix("http://"))
        headers, manage = server.headers(), server.headers("management")
        assert client.is_server_ready(headers=headers)  # nothing registered: nothing to wait for
        r = requests.post(f"{server.management_url}/models", params={"url": "wine.mar", "synchronous": "true"},
                          headers=manage, timeout=120)  # fmt: skip
        assert r.status_code == 200, r.text
        assert client.is_model_ready("wine", headers=headers) and client.is_server_ready(headers=headers)
        for workers, ready in ((0, False), (1, True)):
            r = requests.put(f"{server.management_url}/models/wine", headers=manage, timeout=120,
                             params={"min_worker": workers, "max_worker": workers, "synchronous": "true"})  # fmt: skip
            assert r.status_code == 200, r.text
            assert client.is_model_ready("wine", headers=headers) is ready, workers
            assert client.is_server_ready(headers=headers) is ready, workers
            assert requests.get(f"{server.inference_url}/ping", headers=headers, timeout=10).status_code == 200
