"""The frontend class (tsforge.server.frontend): compiled once per source, installed where
TorchServe loads it first, and a missing compiler named with its fix. Served: test_oip_routes."""

from __future__ import annotations

import pytest

from tsforge.server import frontend

CLASS = frontend.COMPILED


def test_the_class_is_compiled_against_torchserves_jar_and_installed_into_the_run_folder(tmp_path, monkeypatch):
    compiled = frontend.classes()
    assert (compiled / CLASS).is_file()

    def compile_again(out):
        raise AssertionError(f"compiled again into {out}")

    monkeypatch.setattr(frontend, "compile_to", compile_again)
    assert frontend.classes() == compiled  # cached: the second call compiles nothing
    stale = tmp_path / "run" / "org" / "stale.class"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"left by an older start")
    frontend.install(tmp_path / "run")
    assert (tmp_path / "run" / CLASS).read_bytes() == (compiled / CLASS).read_bytes()
    assert not stale.exists()


def test_without_javac_the_error_names_the_package_and_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(frontend.shutil, "which", lambda name: None)
    with pytest.raises(frontend.FrontendError, match=frontend.JAVAC_PACKAGE):
        frontend.compile_to(tmp_path / "classes")
    assert not (tmp_path / "classes").exists()


def test_a_compile_error_is_reported_and_leaves_no_half_written_tree(tmp_path, monkeypatch):
    broken = tmp_path / "OpenInferenceProtocolRequestHandler.java"
    broken.write_text("package org.pytorch.serve.http.api.rest; class Broken {")
    monkeypatch.setattr(frontend, "SOURCE", broken)
    with pytest.raises(frontend.FrontendError, match="javac failed"):
        frontend.compile_to(tmp_path / "out" / "classes")
    assert list((tmp_path / "out").iterdir()) == []


def test_a_folder_that_is_not_a_compiled_tree_is_never_taken_for_one(tmp_path):
    """The image once compiled into the folder that held the source: the rename failed quietly."""
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "OpenInferenceProtocolRequestHandler.java").write_text("// source")
    with pytest.raises(frontend.FrontendError, match="exists"):
        frontend.compile_to(tmp_path / "out")
