"""Audio kind: a recording in, speech segments out (a voice-activity model).

Accepted: a WAV, FLAC or OGG (Vorbis/Opus) body or multipart field, {"audio": "<base64>",
"probabilities": bool}, or an Open Inference Protocol FP32 tensor "audio" of shape [1, n] or
[n] with parameters {"sample_rate": r} (default: the model's rate). Files are read by libsndfile (soundfile); the cost is
bounded from the header before any sample is decoded (duration, rate, frames x channels), then
exactly the header's frames are read, channels averaged, and resampled to 16 kHz by soxr.
The audio becomes one row of T chunks (T, context + chunk): each chunk prefixed with the last
`context` samples of the one before, as silero-vad's own wrappers do, so the model keeps no
context, only its recurrent state inside one pass. `collate` pads a batch to its longest T.
"""

from __future__ import annotations

import base64
import binascii
import math
from typing import Any

import numpy as np

from handlers import oip
from handlers.audio_decode import MIN_SAMPLE_RATE, USAGE, decode_file, long_enough, read_header, to_model_rate
from handlers.codec import Decoded, Limits, Payload, RequestError, check_media_type
from handlers.contracts import AudioContract

AUDIO_MEDIA = (
    "audio/wav", "audio/x-wav", "audio/wave", "audio/vnd.wave", "audio/flac", "audio/x-flac",
    "audio/ogg", "application/ogg", "application/octet-stream", "multipart/form-data",
)  # fmt: skip
ACCEPTED_MEDIA = (*AUDIO_MEDIA, "application/json")
# A recurrent model's work grows with the chunks of the longest recording in its pass.
COST_UNIT = "chunks"


def frames(audio: np.ndarray, contract: AudioContract) -> np.ndarray:
    """16 kHz mono samples -> (T, context + chunk): chunk t's samples after the last `context`
    samples of chunk t - 1 (zeros for the first); the last chunk padded with zeros (silero's
    OnnxWrapper.__call__ and get_speech_timestamps do the same, one chunk at a time)."""
    chunk, context = contract.chunk, contract.context
    steps = max(1, math.ceil(len(audio) / chunk))
    padded = np.zeros(steps * chunk, np.float32)
    padded[: len(audio)] = audio
    chunks = padded.reshape(steps, chunk)
    previous = np.zeros((steps, context), np.float32)
    previous[1:] = chunks[:-1, -context:]
    return np.concatenate([previous, chunks], axis=1)


def collate(rows: list[np.ndarray]) -> np.ndarray:
    """The requests of one pass as one (B, T, context + chunk) input, zero-padded to the longest T.
    The padded steps' outputs are dropped by encode_outputs; a row's state never meets another's."""
    longest = max(r.shape[1] for r in rows)
    return np.concatenate([np.pad(r, ((0, 0), (0, longest - r.shape[1]), (0, 0))) for r in rows])


def _v2_audio(doc: dict[str, Any], contract: AudioContract, limits: Limits) -> np.ndarray:
    """The protocol's FP32 tensor "audio" [1, n] or [n], with its sample rate as a parameter."""
    inputs = doc.get("inputs")
    if not isinstance(inputs, list) or len(inputs) != 1 or not isinstance(inputs[0], dict):
        raise RequestError(400, "wrong_v2_request", '"inputs" must be a list holding exactly one tensor object.')
    tensor = inputs[0]
    shape = tensor.get("shape")
    if not isinstance(shape, list) or not all(type(d) is int and d > 0 for d in shape) or len(shape) not in (1, 2):
        raise RequestError(400, "wrong_shape", "shape must be [1, n] or [n]: one recording per request.")
    if len(shape) == 2 and shape[0] != 1:
        raise RequestError(400, "wrong_shape", f"shape {shape}: send one recording per request, [1, n].")
    if tensor.get("datatype") not in ("FP32", "FP16", "FP64", "INT16"):
        raise RequestError(400, "wrong_datatype", f"datatype {str(tensor.get('datatype'))[:20]!r}: send FP32 samples.")
    params = tensor.get("parameters") if isinstance(tensor.get("parameters"), dict) else {}
    # Unstated, the rate is the model's own (the metadata route says which): what a client that
    # builds its request from the metadata, as tritonclient's users do, sends.
    request_params = doc.get("parameters") if isinstance(doc.get("parameters"), dict) else {}
    rate = params.get("sample_rate", request_params.get("sample_rate", contract.sample_rate))
    if type(rate) is not int:
        raise RequestError(
            400,
            "wrong_sample_rate",
            f"parameters.sample_rate must be a whole number of Hz, e.g. {contract.sample_rate}.",
        )
    n = shape[-1]
    if not MIN_SAMPLE_RATE <= rate <= limits.max_sample_rate:
        raise RequestError(
            400 if rate < MIN_SAMPLE_RATE else 413,
            "unsupported_sample_rate",
            f"sample_rate {rate}: accepted {MIN_SAMPLE_RATE} to {limits.max_sample_rate} Hz (max_sample_rate).",
        )
    if n / rate > limits.max_audio_seconds:
        raise RequestError(
            413,
            "audio_too_long",
            f"{n} samples at {rate} Hz; the limit is {limits.max_audio_seconds} s (max_audio_seconds).",
        )
    if n > limits.max_audio_samples:
        raise RequestError(
            413, "audio_too_large", f"{n} samples; the limit is {limits.max_audio_samples} (max_audio_samples)."
        )
    samples = oip.numbers(tensor.get("data"), shape).reshape(-1)
    if tensor.get("datatype") == "INT16":
        samples = samples / 32768.0
    return long_enough(to_model_rate(samples.astype(np.float32), rate, contract), contract)


def decode_request(payload: Payload, contract: AudioContract, limits: Limits) -> Decoded:
    """One request -> Decoded rows (1, T, context + chunk), T its 32 ms chunks (the cost)."""
    check_media_type(payload, ACCEPTED_MEDIA)
    if (raw := _file_body(payload)) is not None:
        return _decoded(decode_file(raw, contract, limits), contract, "single")
    doc = oip.split_binary(payload.value, payload.binary_header, limits)
    if oip.is_v2_request(doc):
        params = doc.get("parameters") if isinstance(doc.get("parameters"), dict) else {}
        asked = any(isinstance(o, dict) and o.get("name") == "probabilities" for o in doc.get("outputs") or [])
        return _decoded(
            _v2_audio(doc, contract, limits), contract, "v2", oip.request_id(doc),
            params.get("probabilities") is True or asked, oip.binary_outputs(doc),
        )  # fmt: skip
    if isinstance(doc, dict) and "audio" in doc:
        raw = _embedded_file(doc)
        return _decoded(decode_file(raw, contract, limits), contract, "single", None, doc.get("probabilities") is True)
    raise RequestError(400, "unsupported_input", USAGE)


def _embedded_file(doc: dict[str, Any]) -> bytes:
    """The file of a {"audio": "<base64>"} body."""
    if not isinstance(doc["audio"], str):
        raise RequestError(400, "wrong_type", '"audio" must be a base64 string of a WAV, FLAC or OGG file.')
    try:
        return base64.b64decode(doc["audio"], validate=True)
    except (binascii.Error, ValueError) as e:
        raise RequestError(400, "invalid_base64", f'"audio" is not valid base64: {e}.') from e


def _file_body(payload: Payload) -> bytes | None:
    """The body as an audio file, or None when it is JSON or the protocol's tensors."""
    value = payload.value
    if not isinstance(value, (bytes, bytearray)) or payload.binary_header is not None:
        return None
    if payload.media_type == "application/json" or bytes(value[:1]) in (b"{", b"["):
        return None
    return bytes(value)


def declared_cost(payload: Payload, contract: AudioContract, limits: Limits) -> int | None:
    """A file's cost from its header alone, sent as the body or as base64 in JSON: the worker
    call admits by it before decoding anything (handlers.base). It refuses, as decoding would,
    what the header already refuses (format, rate, length, a cut file). The cost is the larger
    of the model's chunks and the decoding's work, its samples (frames x channels at the file's
    rate) scaled so that the most a file may hold (max_audio_samples) counts as the longest
    recording's chunks: a short file of many channels at a high rate decodes as much as a long
    one. None for the protocol's tensors, whose decoding is a copy and a resample."""
    check_media_type(payload, ACCEPTED_MEDIA)
    raw = _file_body(payload)
    if raw is None:
        doc = oip.split_binary(payload.value, payload.binary_header, limits)
        if oip.is_v2_request(doc) or not isinstance(doc, dict) or "audio" not in doc:
            return None
        raw = _embedded_file(doc)
    info = read_header(raw, limits)
    longest = math.ceil(limits.max_audio_seconds * contract.sample_rate / contract.chunk)
    chunks = math.ceil(info.frames * contract.sample_rate / info.samplerate / contract.chunk)
    decoding = math.ceil(info.frames * info.channels * longest / limits.max_audio_samples)
    return max(1, chunks, decoding)


def _decoded(
    audio: np.ndarray, contract: AudioContract, form: str, request_id: str | None = None,
    probabilities: bool = False, binary: bool | frozenset[str] = False,
) -> Decoded:  # fmt: skip
    rows = frames(audio, contract)[None]
    options = (("samples", len(audio)), ("probabilities", probabilities))
    return Decoded(rows, form, request_id, length=rows.shape[1], binary_outputs=binary, options=options)


def speech_segments(probs: np.ndarray, samples: int, contract: AudioContract) -> list[tuple[int, int]]:
    """(start, end) samples of speech: silero-vad's get_speech_timestamps_from_probs (6.2.3) with
    its defaults and no max_speech_duration (its max-speech branch never runs then)."""
    rate, chunk = contract.sample_rate, contract.chunk
    min_speech = rate * contract.min_speech_ms / 1000
    min_silence = rate * contract.min_silence_ms / 1000
    pad = rate * contract.speech_pad_ms / 1000
    speeches: list[list[int]] = []
    triggered, start, temp_end = False, 0, 0
    for i, p in enumerate(probs.tolist()):
        at = chunk * i
        if p >= contract.threshold and temp_end:
            temp_end = 0
        if p >= contract.threshold and not triggered:
            triggered, start = True, at
            continue
        if p < contract.neg_threshold and triggered:
            temp_end = temp_end or at
            if at - temp_end < min_silence:
                continue
            if temp_end - start > min_speech:
                speeches.append([start, temp_end])
            triggered, temp_end = False, 0
    if triggered and samples - start > min_speech:
        speeches.append([start, samples])
    for i, speech in enumerate(speeches):
        if i == 0:
            speech[0] = int(max(0, speech[0] - pad))
        if i != len(speeches) - 1:
            gap = speeches[i + 1][0] - speech[1]
            if gap < 2 * pad:
                speech[1] += int(gap // 2)
                speeches[i + 1][0] = int(max(0, speeches[i + 1][0] - gap // 2))
            else:
                speech[1] = int(min(samples, speech[1] + pad))
                speeches[i + 1][0] = int(max(0, speeches[i + 1][0] - pad))
        else:
            speech[1] = int(min(samples, speech[1] + pad))
    return [(s, e) for s, e in speeches]


def own_outputs(outputs: np.ndarray, decoded: Decoded) -> np.ndarray:
    """One request's (1, T_pass) probabilities from a pass padded to its longest recording, cut
    to the request's own chunks: what it is answered and what monitoring counts."""
    return outputs[:, : decoded.length]


def encode_outputs(outputs: np.ndarray, decoded: Decoded, contract: AudioContract, model_name: str) -> Any:
    """One request's (1, T_pass) probabilities -> its segments in seconds, speech share, and the
    per-chunk probabilities when asked; padded steps beyond its own T are dropped."""
    options = dict(decoded.options)
    samples = options["samples"]
    probs = np.asarray(own_outputs(outputs, decoded), np.float32).reshape(-1)
    segments = speech_segments(probs, samples, contract)
    seconds = np.asarray(segments, np.float32).reshape(-1, 2) / contract.sample_rate
    share = float(sum(e - s for s, e in segments) / samples)
    if decoded.form == "v2":
        tensors = [oip.tensor("segments", seconds), oip.tensor("speech_share", np.asarray([share], np.float32))]
        if options["probabilities"]:
            tensors.append(oip.tensor("probabilities", probs))
        return oip.response(model_name, tensors, decoded.request_id)
    answer: dict[str, Any] = {
        "segments": [{"start": round(float(s), 3), "end": round(float(e), 3)} for s, e in seconds],
        "speech_share": round(share, 4),
        "duration": round(samples / contract.sample_rate, 3),
    }
    if options["probabilities"]:
        answer["chunk_seconds"] = contract.chunk / contract.sample_rate
        answer["probabilities"] = [round(float(p), 4) for p in probs]
    return answer


def input_signals(rows: np.ndarray, contract: AudioContract) -> dict[str, np.ndarray]:
    """Per recording: its chunks (duration) and its level in dBFS over the chunks' own samples."""
    samples = rows[:, :, contract.context :].reshape(len(rows), -1)
    rms = np.sqrt(np.mean(np.square(samples, dtype=np.float64), axis=1))
    return {"chunks": np.full(len(rows), rows.shape[1], np.float64), "level_dbfs": 20 * np.log10(np.maximum(rms, 1e-6))}


def replay_inputs(rows: np.ndarray, contract: AudioContract) -> list[dict[str, Any]]:
    """The protocol's input that decodes back to `rows` (1, T, context + chunk): the 16 kHz samples."""
    samples = rows[:, :, contract.context :].reshape(len(rows), -1).astype(np.float32)
    return [
        {"name": "audio", "shape": list(samples.shape), "datatype": "FP32", "data": samples,
         "parameters": {"sample_rate": contract.sample_rate}}
    ]  # fmt: skip


def oip_metadata(contract: AudioContract) -> dict[str, list[dict[str, Any]]]:
    return {
        "inputs": [
            {**oip.tensor_metadata("audio", "FP32", [1, -1]), "parameters": {"sample_rate": contract.sample_rate}}
        ],
        "outputs": [
            oip.tensor_metadata("segments", "FP32", [-1, 2]),
            oip.tensor_metadata("speech_share", "FP32", [1]),
            oip.tensor_metadata("probabilities", "FP32", [-1]),
        ],
    }


def schema(contract: AudioContract) -> dict[str, Any]:
    return {
        "input": {
            "audio/wav, audio/flac, audio/ogg": "one recording; any rate from 8 kHz, any channels (averaged)",
            "application/json": ['{"audio": "<base64 file>", "probabilities": false}'],
            "open_inference_protocol": f'one FP32 tensor "audio" [1, n], parameters {{"sample_rate": r}} (default {contract.sample_rate})',
        },
        "output": {
            "json": '{"segments": [{"start": s, "end": s}, ...], "speech_share": x, "duration": s} '
            '(+ "probabilities" per 32 ms chunk when asked)',
            "open_inference_protocol": [
                "segments [S, 2] FP32 seconds",
                "speech_share [1] FP32",
                "probabilities [T] FP32 (asked)",
            ],
        },
    }
