"""Signed archives: every way an archive can be wrong, refused at every entry point that loads one.

Unsigned, one byte changed, a file added inside, signed by a key nobody trusts: `tsforge serve
start` and the container's `tsforge serve run` refuse to start TorchServe (one line per archive,
naming it and the reason), and `tsforge models register` refuses before calling the server.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tsforge.packaging import signing
from tsforge.paths import CONFIG
from tsforge.server import torchserve
from tsforge.server.client import Client

TSFORGE = str(Path(sys.executable).with_name("tsforge"))


def untrusted_key(folder: Path) -> Path:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    path = folder / "stranger.pem"
    path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return path


def spoil(store: Path, how: str, name: str = "diabetes") -> Path:
    """`store`/<name>.mar made wrong in one way; returns it."""
    archive = store / f"{name}.mar"
    if how == "unsigned":
        signing.signature_of(archive).unlink()
    elif how == "one byte changed":
        data = bytearray(archive.read_bytes())
        data[len(data) // 2] ^= 1
        archive.write_bytes(data)
    elif how == "a file added":
        with zipfile.ZipFile(archive, "a") as z:
            z.writestr("extra/evil.py", "import os\n")
    elif how == "an untrusted key":
        signing.sign(archive, untrusted_key(store.parent))
    return archive


CASES = {
    "unsigned": "unsigned",
    "one byte changed": "changed since it was signed",
    "a file added": "changed since it was signed",
    "an untrusted key": "not trusted",
}


@pytest.fixture
def store(built, tmp_path) -> Path:
    """Two signed archives, copied with their signatures."""
    store = tmp_path / "store"
    store.mkdir()
    for name in ("diabetes", "wine"):
        for path in (built.store / f"{name}.mar", signing.signature_of(built.store / f"{name}.mar")):
            shutil.copy(path, store / path.name)
    return store


def test_a_signed_archive_verifies_and_the_key_is_private(store):
    signing.verify(sorted(store.glob("*.mar")))
    key = signing.signing_key()
    assert key.stat().st_mode & 0o077 == 0, "the signing key is readable by others"


@pytest.mark.parametrize("how", CASES)
def test_each_wrong_archive_is_refused_with_its_reason(store, how):
    spoil(store, how)
    with pytest.raises(signing.SignatureError) as refused:
        signing.verify(sorted(store.glob("*.mar")))
    lines = str(refused.value).splitlines()[1:]
    assert len(lines) == 1 and lines[0].strip().startswith("diabetes.mar: ") and CASES[how] in lines[0], lines


@pytest.mark.parametrize("how", CASES)
def test_serve_start_refuses_before_torchserve_starts(store, tmp_path, how):
    spoil(store, how)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    with pytest.raises(signing.SignatureError, match="diabetes.mar"):
        torchserve.start(["wine.mar"], run_dir=run_dir, model_store=store)
    assert not (run_dir / torchserve.PID_FILE).exists() and not (run_dir / "logs").exists()


@pytest.mark.parametrize("how", ["unsigned", "an untrusted key"])
def test_the_container_entrypoint_refuses_and_exits(store, tmp_path, how):
    """`tsforge serve run`, the image's command: it exits non-zero, so the container never turns
    healthy and a Swarm update to such an image rolls back."""
    spoil(store, how)
    env = {**os.environ, "TSFORGE_MODEL_STORE": str(store), "TSFORGE_RUN_DIR": str(tmp_path / "run")}
    env["TSFORGE_CONFIG"] = str(CONFIG)
    done = subprocess.run([TSFORGE, "serve", "run"], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert "diabetes.mar: " in done.stderr and CASES[how] in done.stderr and "Traceback" not in done.stderr


def test_register_refuses_before_asking_the_server_to_load(store, tmp_path, monkeypatch):
    spoil(store, "a file added")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.properties").write_text(f"model_store={store}\n")
    server = torchserve.Server(run_dir, "http://127.0.0.1:1", "http://127.0.0.1:1", "http://127.0.0.1:1", tokens=False)
    calls = []
    monkeypatch.setattr(Client, "_call", lambda self, api, method, path, **kw: calls.append((method, path)))
    monkeypatch.setattr(Client, "list", lambda self: calls.append(("GET", "/models")) or [])
    with pytest.raises(signing.SignatureError, match="diabetes.mar: changed"):
        Client(server).register("diabetes.mar")
    assert calls == [("GET", "/models")]  # asked whether the server runs, never to load


def test_the_development_opt_out_is_loud(store, monkeypatch, capsys):
    spoil(store, "unsigned")
    monkeypatch.setenv(signing.ALLOW_UNSIGNED_ENV, "1")
    signing.verify([store / "diabetes.mar"])
    assert "WITHOUT signature verification" in capsys.readouterr().err


@pytest.fixture
def small(tmp_path, monkeypatch) -> Path:
    """A small signed file under a key of its own, in a folder of its own."""
    key = untrusted_key(tmp_path)
    monkeypatch.setenv(signing.SIGNING_KEY_ENV, str(key))
    store = tmp_path / "store"
    store.mkdir()
    (store / "a.mar").write_bytes(b"PK not really a zip, but bytes to sign")
    signing.sign(store / "a.mar")
    return store


def test_a_signed_archive_renamed_is_refused(small):
    keys = signing.trusted_keys()
    assert signing.problem(small / "a.mar", keys) is None
    for path in (small / "a.mar", signing.signature_of(small / "a.mar")):
        shutil.copy(path, small / path.name.replace("a.mar", "b.mar"))
    assert "signed as a.mar, not b.mar" in signing.problem(small / "b.mar", keys)


def test_a_corrupt_signature_or_a_link_is_named_as_such(small):
    keys = signing.trusted_keys()
    (small / "link.mar").symlink_to(small / "a.mar")
    assert signing.problem(small / "link.mar", keys) == "a link, not an archive file"
    sig = signing.signature_of(small / "a.mar")
    sig.write_text(sig.read_text()[:100])
    assert signing.problem(small / "a.mar", keys).startswith("unreadable signature a.mar.sig")


@pytest.mark.integration
def test_torchserve_loads_the_copy_that_verified_not_what_the_store_holds_later(store, tmp_path):
    """The store changed after the start (one byte of an archive, an archive added): TorchServe
    reads its private copy, checked at start, and knows no archive that was not checked."""
    import requests

    from tests.conftest import running_torchserve

    with running_torchserve(store, tmp_path / "run") as server:
        assert server.model_store != store and server.source_store == store.resolve()
        spoil(store, "one byte changed")
        shutil.copy(store / "wine.mar", store / "added.mar")
        manage = {"headers": server.headers("management"), "timeout": 120}
        params = {"url": "diabetes.mar", "initial_workers": 1, "synchronous": "true"}
        r = requests.post(f"{server.management_url}/models", params=params, **manage)
        assert r.status_code == 200, r.text  # the copy verified at start, not the changed file
        answer = requests.post(
            f"{server.inference_url}/predictions/diabetes",
            json={"features": [0.0] * 10},
            headers=server.headers("inference"),
            timeout=60,
        )
        assert answer.status_code == 200 and "prediction" in answer.json(), answer.text
        r = requests.post(f"{server.management_url}/models", params={**params, "url": "added.mar"}, **manage)
        assert r.status_code >= 400, r.text
        with pytest.raises(signing.SignatureError, match="diabetes.mar: changed since it was signed"):
            Client(server).register("diabetes.mar")
        assert signing.problem(server.model_store / "diabetes.mar", signing.trusted_keys()) is None


def test_a_run_folder_whose_private_copy_would_replace_the_store_is_refused_not_emptied(store):
    """The private copy is made afresh: where it would be the store itself, nothing is deleted."""
    before = sorted(p.name for p in store.iterdir())
    with pytest.raises(signing.SignatureError, match="lies inside"):
        signing.loadable_store(store, store)
    with pytest.raises(signing.SignatureError, match="lies inside"):
        signing.loadable_store(store, store.parent)
    assert sorted(p.name for p in store.iterdir()) == before
