"""Audio bytes -> 16 kHz mono float32 samples, at a cost bounded before decoding (the audio
kind's file reading; handlers.codecs.audio builds the model's rows from them).

libsndfile (soundfile) reads WAV, FLAC and OGG; the header is checked against the limits
(duration, rate, frames x channels) and the container against being cut (a WAV's data size, an
OGG's last page) before a sample is decoded; then exactly the header's frames are read, the
channels averaged and soxr resamples to the model's rate.

Measured on the 2-core reference machine (notes/speech.md): sf.info 0.06-0.6 ms; decoding 60 s
of 44.1 kHz stereo 19 ms (WAV), 62 ms (FLAC), 85 ms (OGG Vorbis); soxr HQ 44.1 -> 16 kHz of
60 s 23-28 ms; mixdown as a matrix-vector product 7 ms (numpy's mean over the channel axis: 50-70 ms).
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np

from handlers.codec import Limits, RequestError, check_size
from handlers.contracts import AudioContract

# libsndfile's major formats this kind takes (it also reads MP3, AIFF and more: not promised).
# WAVEX: the WAVE_FORMAT_EXTENSIBLE header sox and ffmpeg write for more than two channels,
# more than 16 bits or (ffmpeg) rates above 48 kHz: a WAV all the same.
FORMATS = ("WAV", "WAVEX", "FLAC", "OGG")
# A streaming writer that cannot seek back leaves the WAV data size at 0 or all ones: unknown.
WAV_UNKNOWN_SIZES = (0, 0xFFFFFFFF)
MAX_RIFF_CHUNKS = 64  # chunks walked to find "data" (fmt, fact, LIST, ...: a handful in practice)
MIN_SAMPLE_RATE = 8000
# libsndfile reports SF_COUNT_MAX frames for a FLAC whose STREAMINFO states no length; soundfile
# then cannot read it bounded (its seek after a short read fails), so it is refused.
UNKNOWN_FRAMES = 2**62
USAGE = (
    'Send a WAV, FLAC or OGG body, {"audio": "<base64 file>"}, or an Open Inference Protocol FP32 tensor "audio" '
    '[1, n] with parameters {"sample_rate": r} (default: the model rate).'
)


def check_header(info: Any, limits: Limits) -> None:
    """Refuse from the header alone what would cost too much, or cannot be read bounded."""
    if info.format not in FORMATS:
        raise RequestError(
            415, "unsupported_audio_format", f"{info.format} audio is not accepted; send WAV, FLAC or OGG."
        )
    if not MIN_SAMPLE_RATE <= info.samplerate <= limits.max_sample_rate:
        raise RequestError(
            400 if info.samplerate < MIN_SAMPLE_RATE else 413,
            "unsupported_sample_rate",
            f"The audio's sample rate is {info.samplerate} Hz; accepted: {MIN_SAMPLE_RATE} to {limits.max_sample_rate} Hz (max_sample_rate).",
        )
    if info.frames >= UNKNOWN_FRAMES:
        raise RequestError(400, "audio_length_unknown", "The audio's header states no length; re-encode it with one.")
    if info.frames == 0:
        raise RequestError(400, "empty_audio", "The audio holds no samples.")
    seconds = info.frames / info.samplerate
    if seconds > limits.max_audio_seconds:
        raise RequestError(
            413,
            "audio_too_long",
            f"The audio lasts {seconds:.1f} s; the limit is {limits.max_audio_seconds} s per request (max_audio_seconds).",
        )
    if info.frames * info.channels > limits.max_audio_samples:
        raise RequestError(
            413,
            "audio_too_large",
            f"The audio holds {info.frames} frames x {info.channels} channels; the limit is {limits.max_audio_samples} "
            "samples per request (max_audio_samples): send fewer channels or a lower sample rate.",
        )


def wav_data_size(raw: bytes) -> tuple[int, int] | None:
    """(declared, present) bytes of a RIFF WAVE body's "data" chunk, None if not found."""
    pos = 12
    for _ in range(MAX_RIFF_CHUNKS):
        if pos + 8 > len(raw):
            return None
        size = int.from_bytes(raw[pos + 4 : pos + 8], "little")
        if raw[pos : pos + 4] == b"data":
            return size, len(raw) - pos - 8
        pos += 8 + size + (size & 1)
    return None


def check_complete(raw: bytes, info: Any, limits: Limits) -> None:
    """Refuse a WAV whose header declares more than the limits or than the body holds, and an
    OGG stream that ends before its last page: libsndfile would read such files silently
    short (a cut upload, or a header that lies about its length)."""
    if info.format in ("WAV", "WAVEX") and (sizes := wav_data_size(raw)) and sizes[0] not in WAV_UNKNOWN_SIZES:
        declared, present = sizes
        seconds = info.frames / info.samplerate * declared / max(present, 1)
        if seconds > limits.max_audio_seconds:
            raise RequestError(
                413,
                "audio_too_long",
                f"The WAV header declares {seconds:.1f} s; the limit is {limits.max_audio_seconds} s per request "
                "(max_audio_seconds).",
            )
        if declared > present:
            raise RequestError(400, "corrupt_audio", f"The WAV declares {declared} bytes of samples; the body holds "
                          f"{present}: the file was cut.")  # fmt: skip
    if info.format == "OGG":
        last = raw.rfind(b"OggS")
        segments = raw[last + 27 : last + 27 + raw[last + 26]] if 0 <= last and len(raw) >= last + 27 else None
        complete = segments is not None and len(segments) == raw[last + 26]
        if not complete or last + 27 + len(segments) + sum(segments) != len(raw) or not raw[last + 5] & 4:
            raise RequestError(400, "corrupt_audio", "The OGG stream ends before its last page: the file was cut.")


def read_header(raw: bytes, limits: Limits) -> Any:
    """The file's header (soundfile's info: format, rate, frames, channels), once every check
    that needs no sample has passed; a RequestError names what fails."""
    import soundfile as sf

    check_size(raw, limits)
    try:
        info = sf.info(io.BytesIO(raw))
    except (sf.SoundFileError, RuntimeError) as e:  # LibsndfileError: not a format it knows
        raise RequestError(400, "undecodable_audio", f"The body is not readable audio ({_reason(e)}). {USAGE}") from e
    check_header(info, limits)
    check_complete(raw, info, limits)
    return info


def decode_file(raw: bytes, contract: AudioContract, limits: Limits) -> np.ndarray:
    """WAV, FLAC or OGG bytes -> 16 kHz mono float32, at a cost bounded by the header first."""
    import soundfile as sf

    info = read_header(raw, limits)
    try:
        with sf.SoundFile(io.BytesIO(raw)) as f:
            # Exactly the header's frames: never frames=-1, which allocates what the header says.
            samples = f.read(info.frames, dtype="float32", always_2d=True)
    except (sf.SoundFileError, RuntimeError) as e:  # FLAC cut or corrupted: "decoder lost sync"
        raise RequestError(400, "corrupt_audio", f"The audio ends early or is corrupt ({_reason(e)}).") from e
    if len(samples) == 0:
        raise RequestError(400, "empty_audio", "The audio holds no samples.")
    finite = np.isfinite(samples)
    if not finite.all():  # a float WAV can carry NaN or infinity
        frame = int(np.argmin(finite.all(axis=1)))
        raise RequestError(400, "non_finite_number", f"Sample {frame} is {samples[frame].max()}; send finite samples.")
    return long_enough(to_model_rate(mixdown(samples), info.samplerate, contract), contract)


def long_enough(audio: np.ndarray, contract: AudioContract) -> np.ndarray:
    """A few samples at a high rate resample to none at the model's: nothing to answer about."""
    if len(audio) == 0:
        raise RequestError(
            400, "audio_too_short", f"The audio is shorter than one sample at {contract.sample_rate} Hz; send more."
        )
    return audio


def _reason(error: Exception) -> str:
    """libsndfile's message without soundfile's 'Error opening <_io.BytesIO object at 0x...>:'."""
    return str(error).rsplit(">: ", 1)[-1].strip()[:120]


def mixdown(samples: np.ndarray) -> np.ndarray:
    """(frames, channels) -> mono, the channels' mean (silero's read_audio does the same)."""
    if samples.shape[1] == 1:
        return samples[:, 0]
    return samples @ np.full(samples.shape[1], 1.0 / samples.shape[1], np.float32)


def to_model_rate(mono: np.ndarray, rate: int, contract: AudioContract) -> np.ndarray:
    if rate == contract.sample_rate:
        return np.ascontiguousarray(mono, np.float32)
    import soxr

    return soxr.resample(mono, rate, contract.sample_rate, quality="HQ").astype(np.float32, copy=False)
