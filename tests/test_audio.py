"""The audio kind (handlers/codecs/audio.py) and the speech model (models/silero_vad.py):
every format decoded, the header-bound refusals and their cost, truncated files, state
isolation in a batch, TorchScript-ONNX parity, silero's own segment rules.
"""

from __future__ import annotations

import base64
import io
import json
import time

import numpy as np
import onnxruntime as ort
import pytest
import soundfile as sf
import torch

from bench.worst_audio import encoded, flac_bomb, flac_claiming, speechlike, wav_8ch_384k, wav_claiming_ten_hours
from handlers.codec import Limits, Payload, RequestError
from handlers.codecs import audio
from handlers.contracts import AudioContract

C = AudioContract()
L = Limits(max_body_bytes=16 << 20)
RATE = 44100


def refused(raw: bytes, limits: Limits = L) -> tuple[RequestError, float]:
    started = time.perf_counter()
    with pytest.raises(RequestError) as caught:
        audio.decode_request(Payload(raw, "application/octet-stream"), C, limits)
    return caught.value, time.perf_counter() - started


@pytest.mark.parametrize(
    ("fmt", "subtype"), [("WAV", "PCM_16"), ("FLAC", "PCM_16"), ("OGG", "VORBIS"), ("OGG", "OPUS")]
)
def test_each_format_decodes_to_16k_mono(fmt: str, subtype: str) -> None:
    rate = 48000 if subtype == "OPUS" else RATE  # Opus is 48 kHz inside
    decoded = audio.decode_request(Payload(encoded(speechlike(3.0, rate), fmt, subtype, rate), "audio/wav"), C, L)
    frames = decoded.rows
    assert frames.shape[0] == 1 and frames.shape[2] == C.context + C.chunk
    samples = dict(decoded.options)["samples"]
    assert abs(samples - 3 * 16000) <= 400  # Vorbis/Opus pad or trim a few hundred samples
    assert decoded.length == -(-samples // C.chunk)
    # the context of chunk t is the tail of chunk t - 1
    np.testing.assert_array_equal(frames[0, 1:, : C.context], frames[0, :-1, -C.context :])


def test_a_wav_header_claiming_ten_hours_reads_only_what_is_there() -> None:
    decoded = audio.decode_request(Payload(wav_claiming_ten_hours()), C, L)
    assert dict(decoded.options)["samples"] == 16000  # libsndfile bounds a WAV's frames by its bytes


def test_header_worst_cases_are_refused_cheaply() -> None:
    cases = {
        "8ch_384k": (wav_8ch_384k(), 413, "unsupported_sample_rate"),  # the rate alone refuses it
        "flac_bomb": (flac_bomb(), 413, "audio_too_large"),
        "wav_61s": (encoded(np.zeros((61 * 16000, 1), np.float32), "WAV", "PCM_16", 16000), 413, "audio_too_long"),
        "garbage": (bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8)), 400, "undecodable_audio"),
        "mp3": (encoded(speechlike(1.0), "MP3", "MPEG_LAYER_III"), 415, "unsupported_audio_format"),
        "flac_claims_10h": (flac_claiming(10 * 3600 * RATE), 413, "audio_too_long"),
        "flac_unknown_length": (flac_claiming(0), 400, "audio_length_unknown"),
    }
    for name, (raw, status, code) in cases.items():
        error, seconds = refused(raw)
        assert (error.status, error.code) == (status, code), name
        assert seconds < 0.05, f"{name} took {seconds * 1e3:.1f} ms to refuse"


@pytest.mark.parametrize(("fmt", "subtype"), [("FLAC", "PCM_16"), ("WAV", "PCM_16"), ("OGG", "VORBIS")])
def test_a_file_that_ends_mid_frame(fmt: str, subtype: str) -> None:
    raw = encoded(speechlike(5.0), fmt, subtype)
    cut = raw[: len(raw) // 2 + 7]
    if fmt == "FLAC":  # STREAMINFO states the length: the missing half is an error
        error, _ = refused(cut)
        assert (error.status, error.code) == (400, "corrupt_audio")
    else:  # WAV and OGG lengths come from the bytes present: what is there decodes
        samples = dict(audio.decode_request(Payload(cut), C, L).options)["samples"]
        assert 0 < samples < 0.75 * 5 * 16000  # Vorbis: bytes are not proportional to time


def test_raw_samples_through_the_protocol_at_their_stated_rate_or_the_models() -> None:
    x = speechlike(1.0, 8000, 1)[:, 0]
    doc = {"inputs": [{"name": "audio", "shape": [1, len(x)], "datatype": "FP32", "data": x.tolist(),
                       "parameters": {"sample_rate": 8000}}], "parameters": {"probabilities": True}}  # fmt: skip
    decoded = audio.decode_request(Payload(json.dumps(doc).encode(), "application/json"), C, L)
    assert dict(decoded.options) == {"samples": 16000, "probabilities": True}
    del doc["inputs"][0]["parameters"]  # unstated: taken as the model's 16 kHz, so 8,000 samples stay 8,000
    decoded = audio.decode_request(Payload(json.dumps(doc).encode(), "application/json"), C, L)
    assert dict(decoded.options)["samples"] == 8000
    doc["inputs"][0]["parameters"] = {"sample_rate": "8k"}
    with pytest.raises(RequestError, match="sample_rate"):
        audio.decode_request(Payload(json.dumps(doc).encode(), "application/json"), C, L)


def test_segments_match_silero_get_speech_timestamps() -> None:
    import importlib.util

    # silero's own function, read from the pinned wheel's file: importing the package would set
    # torch's thread count for the whole test process (silero_vad/model.py does at import).
    where = importlib.util.find_spec("silero_vad").submodule_search_locations[0]
    spec = importlib.util.spec_from_file_location("silero_utils", f"{where}/utils_vad.py")
    utils = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(utils)
    get_speech_timestamps_from_probs = utils.get_speech_timestamps_from_probs

    rng = np.random.default_rng(0)
    for _ in range(50):  # smoothed random probability tracks with runs of speech and silence
        probs = np.clip(np.repeat(rng.random(40), rng.integers(1, 30)) + rng.normal(0, 0.1, 1), 0, 1)
        samples = len(probs) * C.chunk - int(rng.integers(0, C.chunk))
        theirs = get_speech_timestamps_from_probs(probs.tolist(), audio_length_samples=samples)
        assert [(s["start"], s["end"]) for s in theirs] == audio.speech_segments(probs, samples, C)


# ---- the model: both runtimes over real speech ------------------------------------------------


@pytest.fixture(scope="module")
def runtimes(tmp_path_factory):
    from pathlib import Path

    from models import silero_vad

    folder = tmp_path_factory.mktemp("silero")
    script = silero_vad.scripted_sequence()
    script.save(str(folder / "vad.pt"))
    silero_vad.onnx_sequence(folder / "vad.onnx")
    torch.set_num_threads(1)
    ts = torch.jit.load(str(folder / "vad.pt"))
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(Path(folder / "vad.onnx")), options, providers=["CPUExecutionProvider"])

    def run_ts(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return ts(torch.from_numpy(x)).numpy()

    return {"torchscript": run_ts, "onnx": lambda x: session.run(None, {"frames": x})[0]}


@pytest.fixture(scope="module")
def speech(tmp_path_factory) -> list[np.ndarray]:
    """Six generated clips (espeak-ng speech, sox negatives), decoded by the codec."""
    from models.silero_vad_eval.generate import generate  # espeak-ng and sox: scripts/bootstrap.sh

    out = tmp_path_factory.mktemp("speech")
    labels = generate(out, clips=6, seed=3)
    return [audio.decode_file((out / f"{k}.wav").read_bytes(), C, L) for k in labels]


def test_torchscript_and_onnx_agree_on_speech(runtimes, speech) -> None:
    for clip in speech:
        rows = audio.frames(clip, C)[None]
        ts, onnx = runtimes["torchscript"](rows), runtimes["onnx"](rows)
        assert np.abs(ts - onnx).max() < 1e-4  # measured 2.0e-5 on 40 clips (11,108 chunks)


@pytest.mark.parametrize("runtime", ["torchscript", "onnx"])
def test_a_request_gets_the_same_answer_alone_and_in_any_batch(runtimes, speech, runtime) -> None:
    run = runtimes[runtime]
    rows = [audio.frames(c, C)[None] for c in speech]
    alone = [run(r)[0] for r in rows]
    for order in (range(len(rows)), reversed(range(len(rows)))):
        order = list(order)
        batch = run(audio.collate([rows[i] for i in order]))
        for j, i in enumerate(order):
            # ONNX Runtime: identical; TorchScript: oneDNN picks other kernels by batch size
            # (measured up to 4.4e-5; no segment list changed in 48 trials)
            assert np.abs(batch[j, : len(alone[i])] - alone[i]).max() <= (1e-4 if runtime == "torchscript" else 1e-6)
            samples = len(speech[i])
            assert audio.speech_segments(batch[j, : len(alone[i])], samples, C) == audio.speech_segments(
                alone[i], samples, C
            )


def test_answer_json(runtimes, speech) -> None:
    raw = io.BytesIO()
    sf.write(raw, speech[0], 16000, format="WAV", subtype="FLOAT")
    body = json.dumps({"audio": base64.b64encode(raw.getvalue()).decode(), "probabilities": True}).encode()
    decoded = audio.decode_request(Payload(body, "application/json"), C, L)
    answer = audio.encode_outputs(runtimes["onnx"](decoded.rows), decoded, C, "silero_vad")
    assert len(answer["probabilities"]) == decoded.length and 0.0 <= answer["speech_share"] <= 1.0
    assert all(0 <= s["start"] < s["end"] <= answer["duration"] for s in answer["segments"])
