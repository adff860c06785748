"""Worst-case bodies for the speech model (the audio kind): the costliest recordings its limits
still accept, and the headers and streams they refuse before decoding (issue #26's list: a
header declaring 10 hours, 8 channels at 384 kHz, a FLAC that expands far beyond its size, a
file that ends mid-frame). Built in memory with soundfile (libsndfile) and NumPy."""

from __future__ import annotations

import io
import struct

import numpy as np
import soundfile as sf

MODEL = "silero_vad"  # the speech model they are sent to
RATE = 44100  # a music or phone app's rate: every accepted case is resampled to 16 kHz


def speechlike(seconds: float, rate: int = RATE, channels: int = 2) -> np.ndarray:
    """A 220 Hz tone switched on and off three times a second, quieter in later channels."""
    t = np.arange(int(seconds * rate)) / rate
    x = 0.3 * np.sin(2 * np.pi * 220 * t) * (np.sin(2 * np.pi * 3 * t) > 0)
    return np.stack([x * (1 - 0.3 * c) for c in range(channels)], 1).astype(np.float32)


def encoded(data: np.ndarray, fmt: str, subtype: str, rate: int = RATE) -> bytes:
    """`data` (frames, channels) as a file body. Written in blocks: one sf.write of a long OGG
    Vorbis crashes libsndfile 1.2.2 (notes/speech.md)."""
    out = io.BytesIO()
    with sf.SoundFile(out, "w", rate, data.shape[1], format=fmt, subtype=subtype) as f:
        for i in range(0, len(data), 65536):
            f.write(data[i : i + 65536])
    return out.getvalue()


def wav_header(channels: int, rate: int, frames: int, bits: int = 16) -> bytes:
    """A 44-byte PCM WAV header declaring `frames` frames (capped by the 32-bit size fields)."""
    data = min(frames * channels * bits // 8, 0xFFFFFFFF - 36)
    fmt = struct.pack("<IHHIIHH", 16, 1, channels, rate, rate * channels * bits // 8, channels * bits // 8, bits)
    return b"RIFF" + struct.pack("<I", 36 + data) + b"WAVE" + b"fmt " + fmt + b"data" + struct.pack("<I", data)


def flac_claiming(frames: int, seconds: float = 60.0) -> bytes:
    """A real FLAC of `seconds` whose STREAMINFO states `frames` total samples (0: unknown)."""
    flac = bytearray(encoded(speechlike(seconds), "FLAC", "PCM_16"))
    at = 8 + 13  # "fLaC", the block header, then STREAMINFO's 36-bit total-samples field
    flac[at] = (flac[at] & 0xF0) | (frames >> 32)
    flac[at + 1 : at + 5] = (frames & 0xFFFFFFFF).to_bytes(4, "big")
    return bytes(flac)


def wav_claiming_ten_hours() -> bytes:
    """Refused from its size field: a header declaring 10 hours with one second present (which
    libsndfile alone would read, silently short)."""
    return wav_header(1, 16000, 10 * 3600 * 16000) + (np.ones(16000, "<i2") * 1000).tobytes()


def wav_8ch_384k() -> bytes:
    """Refused by its rate: 8 channels at 384 kHz declared for 10 hours, 0.1 s present."""
    return wav_header(8, 384000, 10 * 3600 * 384000) + bytes(8 * 2 * 38400)


def flac_bomb() -> bytes:
    """Refused by its declared size: ~46 kB of silence that decodes to 60 s x 8 ch x 96 kHz
    (184 MB of float32)."""
    return encoded(np.zeros((60 * 96000, 8), np.float32), "FLAC", "PCM_16", 96000)


def cut_mid_frame(fmt: str, subtype: str, seconds: float = 5.0) -> bytes:
    """A file cut a few bytes past its middle, inside a frame."""
    raw = encoded(speechlike(seconds), fmt, subtype)
    return raw[: len(raw) // 2 + 7]


def cases() -> list[tuple[str, str, str, bytes, str, int]]:
    """(name, model, Content-Type, body, what it stresses, expected status) for bench.worst_cases."""
    wav, flac, ogg = "audio/wav", "audio/flac", "audio/ogg"
    sixty_16k = encoded(speechlike(60.0, 16000, 1), "WAV", "PCM_16", 16000)
    return [
        ("audio_wav_at_limit", MODEL, wav, sixty_16k, "60 s, 16 kHz mono WAV", 200),
        ("audio_ogg_at_limit", MODEL, ogg, encoded(speechlike(60.0), "OGG", "VORBIS"), "60 s, 44.1 kHz stereo", 200),
        ("audio_flac_at_limit", MODEL, flac, encoded(speechlike(60.0), "FLAC", "PCM_16"), "60 s, 44.1 kHz stereo", 200),
        ("audio_wav_claims_10h", MODEL, wav, wav_claiming_ten_hours(), "header: 10 h; 1 s present", 413),
        ("audio_flac_claims_10h", MODEL, flac, flac_claiming(10 * 3600 * RATE), "STREAMINFO: 10 h", 413),
        ("audio_8ch_384k", MODEL, wav, wav_8ch_384k(), "header: 8 ch at 384 kHz, 10 h", 413),
        ("audio_flac_bomb", MODEL, flac, flac_bomb(), "~46 kB -> 60 s x 8 ch x 96 kHz", 413),
        ("audio_wav_61s", MODEL, wav, encoded(np.zeros((61 * 16000, 1)), "WAV", "PCM_16", 16000), "61 s", 413),
        ("audio_flac_cut_mid_frame", MODEL, flac, cut_mid_frame("FLAC", "PCM_16"), "5 s FLAC cut at half", 400),
        ("audio_wav_cut_mid_frame", MODEL, wav, cut_mid_frame("WAV", "PCM_16"), "5 s WAV cut at half", 400),
        ("audio_ogg_cut_mid_frame", MODEL, ogg, cut_mid_frame("OGG", "VORBIS"), "5 s OGG cut at half", 400),
    ]
