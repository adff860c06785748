"""The speech model through a real TorchServe (the session's `served`, both runtimes): every
format answered, the quality gate recomputed from served answers on the generated set, state
isolation between requests batched together, and the worst cases refused at a small share of
what an accepted recording costs the worker."""

from __future__ import annotations

import base64
import json
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import psutil
import pytest
import requests
import soundfile as sf
import soxr

from bench.worst import worker_pids
from bench.worst_audio import encoded
from bench.worst_cases import worst_cases
from models import silero_vad
from models.silero_vad_eval.generate import generate
from tests.conftest import RUNTIME_OF, served_name
from tsforge.paths import EXAMPLES

pytestmark = pytest.mark.integration

MODELS = (served_name("silero_vad", "torchscript"), served_name("silero_vad", "onnx"))
SPEECH = (EXAMPLES / "speech.wav").read_bytes()
# Per chunk probability, a request alone against the same request in a batch: ONNX Runtime's
# Scan runs rows independently (identical); TorchScript's oneDNN picks kernels by batch size
# (measured up to 4.4e-5 in process, tests/test_audio.py).
# The JSON answer rounds to 4 decimals, so a difference under 1e-4 shows as at most one unit.
SAME_PROBABILITY = {"torchscript": 1e-4 + 1e-9, "onnx": 1e-9}
# What each refused worst case must answer (bench/worst_audio.py).
REFUSALS = {"audio_wav_claims_10h": "audio_too_long", "audio_flac_claims_10h": "audio_too_long",
            "audio_8ch_384k": "unsupported_sample_rate", "audio_flac_bomb": "audio_too_large",
            "audio_wav_61s": "audio_too_long", "audio_flac_cut_mid_frame": "corrupt_audio",
            "audio_wav_cut_mid_frame": "corrupt_audio", "audio_ogg_cut_mid_frame": "corrupt_audio"}  # fmt: skip


def post(served, model: str, body: bytes, content_type: str) -> requests.Response:
    headers = {**served.headers(), "Content-Type": content_type}
    return requests.post(f"{served.inference_url}/predictions/{model}", data=body, headers=headers, timeout=60)


def answer(served, model: str, body: bytes, content_type: str = "audio/wav") -> dict:
    """The answer to the file as uploaded, and its per-chunk probabilities (asked for in the
    JSON form, which carries the same file in base64)."""
    r = post(served, model, body, content_type)
    assert r.status_code == 200, r.text[:300]
    wrapped = json.dumps({"audio": base64.b64encode(body).decode(), "probabilities": True}).encode()
    detailed = post(served, model, wrapped, "application/json").json()
    assert {k: detailed[k] for k in r.json()} == r.json()
    return detailed


def after(start: threading.Barrier, call, *args):
    start.wait()
    return call(*args)


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> tuple[dict[str, dict], dict[str, bytes]]:
    """The held-out set the build gated (SPEC.seed, TEST_CLIPS), spoken again: labels and WAVs."""
    out = tmp_path_factory.mktemp("speech")
    labels = generate(out, silero_vad.TEST_CLIPS, silero_vad.SPEC.seed)
    return labels, {name: (out / f"{name}.wav").read_bytes() for name in labels}


@pytest.mark.parametrize("model", MODELS)
def test_each_format_is_answered_with_the_same_segments(served, model):
    """speech.wav as a phone or music app would send it: 44.1 kHz stereo WAV, FLAC, OGG Vorbis
    and 48 kHz OGG Opus, each decoded, mixed down and resampled by the worker."""
    mono, rate = sf.read(EXAMPLES / "speech.wav", dtype="float32")
    reference = answer(served, model, SPEECH)
    assert len(reference["segments"]) == 2  # examples/README.md: two sentences
    for fmt, subtype, to in (("WAV", "PCM_16", 44100), ("FLAC", "PCM_16", 44100), ("OGG", "VORBIS", 44100),
                             ("OGG", "OPUS", 48000)):  # fmt: skip
        stereo = np.repeat(soxr.resample(mono, rate, to)[:, None], 2, axis=1)
        content_type = {"WAV": "audio/wav", "FLAC": "audio/flac", "OGG": "audio/ogg"}[fmt]
        got = answer(served, model, encoded(stereo, fmt, subtype, to), content_type)
        assert len(got["segments"]) == len(reference["segments"]), (fmt, subtype, got["segments"])
        for a, b in zip(got["segments"], reference["segments"], strict=True):
            # Lossy codecs move a boundary by a chunk or two (32 ms each)
            assert abs(a["start"] - b["start"]) <= 0.1 and abs(a["end"] - b["end"]) <= 0.1, (fmt, subtype, a, b)
        assert abs(got["duration"] - reference["duration"]) <= 0.03


@pytest.mark.parametrize("model", MODELS)
def test_the_quality_gate_holds_on_served_answers(served, built, generated, model):
    """Frame F1 of the served answers over the generated held-out set: above the gate, and the
    figure the build recorded (served one recording per request, built in padded batches)."""
    labels, bodies = generated
    tp = fp = fn = 0
    for name, meta in labels.items():
        served_answer = answer(served, model, bodies[name])
        steps = len(served_answer["probabilities"])
        predicted = np.zeros(steps, bool)
        for segment in served_answer["segments"]:  # seconds, rounded to ms: back to chunks
            chunks = np.array([segment["start"], segment["end"]]) * silero_vad.SAMPLE_RATE / silero_vad.CHUNK
            predicted[int(np.floor(chunks[0] + 1e-3)) : int(np.ceil(chunks[1] - 1e-3))] = True
        truth = silero_vad.frame_labels(meta["speech"], steps) == 1
        tp, fp, fn = tp + (predicted & truth).sum(), fp + (predicted & ~truth).sum(), fn + (~predicted & truth).sum()
    f1 = 2 * tp / (2 * tp + fp + fn)
    runtime = RUNTIME_OF[model]
    gates = json.loads((built.exported("silero_vad", runtime).parent / "gates.json").read_text())
    built_f1 = next(g["value"] for g in gates if g["gate"] == "quality")
    assert f1 >= silero_vad.SPEC.gate.threshold
    assert abs(f1 - built_f1) <= 1e-3, (f1, built_f1)


@pytest.mark.parametrize("model", MODELS)
def test_a_recording_gets_the_same_answer_alone_and_batched_with_others(served, generated, model):
    """Eight recordings of different lengths sent at once (batch size 8, 5 ms delay), three
    rounds in shifted orders: each answer equals that recording's answer alone."""
    labels, bodies = generated
    # Eight different lengths within 2x of each other: the worker puts them in one pass
    # (scheduling.LENGTH_SPREAD), so every shorter one is padded there.
    by_length = sorted(labels, key=lambda n: labels[n]["samples"])
    names = next(by_length[i : i + 8] for i in range(len(by_length) - 7)
                 if labels[by_length[i + 7]]["samples"] <= 2 * labels[by_length[i]]["samples"])  # fmt: skip
    assert len({labels[n]["samples"] for n in names}) == 8
    alone = {name: answer(served, model, bodies[name]) for name in names}
    offset = served.log_file.stat().st_size
    for shift in range(3):
        order = names[shift:] + names[:shift]
        start = threading.Barrier(len(order))
        with ThreadPoolExecutor(len(order)) as pool:
            futures = {name: pool.submit(after, start, answer, served, model, bodies[name]) for name in order}
        got = {name: future.result() for name, future in futures.items()}
        for name in names:
            a, b = np.asarray(got[name]["probabilities"]), np.asarray(alone[name]["probabilities"])
            assert a.shape == b.shape and np.abs(a - b).max() <= SAME_PROBABILITY[RUNTIME_OF[model]], name
            assert got[name]["segments"] == alone[name]["segments"], name
    # The worker sends its batch counts once a second (handlers.batch_metrics): read until they came.
    batches = re.compile(rf"HandlerBatches\.Count:[\d.]+\|#ModelName:{model},[^|]*BatchSize:(\d+)\|")
    deadline, sizes = time.monotonic() + 10, []
    while max(sizes, default=0) < 4 and time.monotonic() < deadline:
        time.sleep(0.5)
        with open(served.log_file, "rb") as f:
            f.seek(offset)
            sizes = [int(n) for n in batches.findall(f.read().decode(errors="replace"))]
    assert max(sizes, default=0) >= 4, sizes  # they did share passes: the test is about batches


def test_worst_cases_are_refused_at_a_small_share_of_an_accepted_recording(served):
    """Every audio worst case of `make bench` gets its documented status and body; a refusal
    costs the worker under a tenth of the CPU of decoding and running a 60 s recording."""
    cases = [c for c in worst_cases() if c.model == "silero_vad"]
    workers = [psutil.Process(pid) for pid in worker_pids(served, "silero_vad")]

    def cpu_seconds(case) -> tuple[int, dict, float]:
        before = sum(sum(p.cpu_times()[:2]) for p in workers)
        r = post(served, case.model, case.body, case.content_type)
        return r.status_code, r.json(), sum(sum(p.cpu_times()[:2]) for p in workers) - before

    accepted = next(c for c in cases if c.name == "audio_wav_at_limit")
    cpu_seconds(accepted)  # warm
    _, _, full = cpu_seconds(accepted)
    for case in cases:
        status, body, spent = cpu_seconds(case)
        assert status == case.expect, (case.name, body)
        if status != 200:
            assert body["error"] == REFUSALS[case.name] and body["detail"], (case.name, body)
            assert spent < full / 10, (
                f"{case.name}: {spent * 1e3:.0f} ms of worker CPU, a 60 s recording {full * 1e3:.0f}"
            )
