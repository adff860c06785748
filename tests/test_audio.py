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


def test_a_wav_header_claiming_ten_hours_is_refused_from_its_size_field() -> None:
    error, _ = refused(wav_claiming_ten_hours())  # libsndfile alone would read the 1 s present
    assert (error.status, error.code) == (413, "audio_too_long") and "36000.0 s" in error.detail
    streaming = bytearray(wav_claiming_ten_hours())
    streaming[40:44] = (0xFFFFFFFF).to_bytes(4, "little")  # a writer that could not seek back: unknown
    assert dict(audio.decode_request(Payload(bytes(streaming)), C, L).options)["samples"] == 16000


def test_a_wavex_file_with_four_channels_and_24_bits_is_a_wav() -> None:
    raw = encoded(speechlike(2.0, 48000, 4), "WAVEX", "PCM_24", 48000)
    assert sf.info(io.BytesIO(raw)).format == "WAVEX"
    assert dict(audio.decode_request(Payload(raw, "audio/wav"), C, L).options)["samples"] == 32000


def test_audio_too_short_or_not_finite_is_a_400_naming_it() -> None:
    one_frame = encoded(np.full((1, 1), 0.5, np.float32), "WAV", "PCM_16", 48000)  # resamples to nothing
    assert refused(one_frame)[0].code == "audio_too_short"
    nan = speechlike(1.0, 16000, 1)
    nan[100] = np.nan
    error, _ = refused(encoded(nan, "WAV", "FLOAT", 16000))
    assert (error.status, error.code) == (400, "non_finite_number") and "Sample 100" in error.detail


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


@pytest.mark.parametrize(
    ("fmt", "subtype"), [("FLAC", "PCM_16"), ("WAV", "PCM_16"), ("OGG", "VORBIS"), ("OGG", "OPUS")]
)
def test_a_file_that_ends_mid_frame_is_a_400(fmt: str, subtype: str) -> None:
    rate = 48000 if subtype == "OPUS" else RATE
    raw = encoded(speechlike(5.0, rate), fmt, subtype, rate)
    assert audio.decode_request(Payload(raw), C, L).rows.shape[1] > 0  # whole, it decodes
    for cut in (raw[: len(raw) // 2 + 7], raw[:-1]):
        error, _ = refused(cut)
        assert (error.status, error.code) == (400, "corrupt_audio"), (fmt, len(cut))


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
    # Each limit named: the rate's, the duration's, the samples'; a stray top-level parameters.
    small = Limits(max_body_bytes=16 << 20, max_sample_rate=48000, max_audio_seconds=1, max_audio_samples=6000)
    for rate, n, code, limit in ((96000, 100, "unsupported_sample_rate", "max_sample_rate"),
                                 (8000, 8001, "audio_too_long", "max_audio_seconds"),
                                 (16000, 7000, "audio_too_large", "max_audio_samples")):  # fmt: skip
        doc["inputs"][0].update(shape=[1, n], data=[0.0] * n, parameters={"sample_rate": rate})
        with pytest.raises(RequestError) as caught:
            audio.decode_request(Payload(json.dumps(doc).encode(), "application/json"), C, small)
        assert (caught.value.status, caught.value.code) == (413, code) and limit in caught.value.detail
    doc["inputs"][0].update(shape=[1, 3], data=[0.0] * 3, parameters={"sample_rate": 48000})
    doc["parameters"] = ["not", "a", "dict"]  # 3 samples at 48 kHz: one at 16 kHz
    assert (
        dict(audio.decode_request(Payload(json.dumps(doc).encode(), "application/json"), C, L).options)["samples"] == 1
    )


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
    ts = torch.jit.load(str(folder / "vad.pt"))
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(Path(folder / "vad.onnx")), options, providers=["CPUExecutionProvider"])

    def run_ts(x: np.ndarray) -> np.ndarray:
        # One thread, as a served worker runs; restored after, since the thread count is the
        # process's: a build later in this session trained with one thread rounds differently.
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            with torch.inference_mode():
                return ts(torch.from_numpy(x)).numpy()
        finally:
            torch.set_num_threads(threads)

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
