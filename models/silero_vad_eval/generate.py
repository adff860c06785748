"""A labelled voice-activity set made at build time from espeak-ng and sox (Debian packages).

Positive clips: 2-4 sentences, each spoken by an espeak-ng voice at some speed, trimmed of
espeak's own edge silence (-40 dB of the utterance's peak: it leaves ~13 ms before and ~350 ms
after each sentence), separated by known silences, optionally under a noise bed. Negative
clips: sox-made noise, tones, sweeps and plucked-note "music", no speech at all. The labels are
the sentences' sample extents, so they are exact up to the trim threshold.

    python models/silero_vad_eval/generate.py OUT_DIR [--clips 40] [--seed 0]

Writes OUT_DIR/<id>.wav (16-bit PCM at espeak's 22050 Hz: the codec resamples, as in serving)
and OUT_DIR/labels.json: {id: {"rate", "samples", "speech": [[start_s, end_s], ...], "kind"}}.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

RATE = 22050  # espeak-ng's output rate
VOICES = ("en-us", "en-gb", "en-gb-x-rp", "en-gb-scotland", "en-029", "en-us+f3", "en-gb+f4", "en-us+m3")
SPEEDS = (130, 175, 220)  # words per minute (espeak's default is 175)
SENTENCES = (
    "The quick brown fox jumps over the lazy dog.",
    "Please send the quarterly report before Friday afternoon.",
    "A model server answers requests in batches to keep the processor busy.",
    "Rain is expected across the northern hills tonight.",
    "She opened the window and listened to the distant traffic.",
    "Every request is checked before it reaches the network.",
    "The museum will reopen next spring after a long renovation.",
    "Turn left at the second junction and follow the river road.",
    "Numbers like four hundred and twelve are read aloud slowly.",
    "Our train was delayed by almost twenty minutes this morning.",
    "He painted the old fence a bright shade of green.",
    "Voice activity detection finds where people are talking.",
    "The committee approved the budget without further debate.",
    "Fresh bread smells wonderful early in the morning.",
    "Can you hear the difference between these two recordings?",
    "Keep the receipt in case the parts need to be returned.",
)
NEGATIVES = (
    ("white noise", ["synth", "{d}", "whitenoise", "vol", "0.3"]),
    ("pink noise", ["synth", "{d}", "pinknoise", "vol", "0.5"]),
    ("brown noise", ["synth", "{d}", "brownnoise", "vol", "0.6"]),
    ("sine 440 Hz", ["synth", "{d}", "sine", "440", "vol", "0.4"]),
    ("square 220 Hz", ["synth", "{d}", "square", "220", "vol", "0.2"]),
    ("chirp 100-4000 Hz", ["synth", "{d}", "sine", "100-4000", "vol", "0.4"]),
    (
        "tremolo chord",
        ["synth", "{d}", "sine", "261.6", "sine", "329.6", "sine", "392", "remix", "-", "tremolo", "5", "60"],
    ),
    ("plucked notes", None),  # a melody of sox pluck notes, built below
)


def espeak(text: str, voice: str, speed: int, pitch: int, work: Path) -> np.ndarray:
    out = work / "utt.wav"
    subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch), "-w", str(out), text], check=True)
    samples, rate = sf.read(out, dtype="float32")
    assert rate == RATE, rate
    return trimmed(samples)


def trimmed(x: np.ndarray, db: float = -40.0) -> np.ndarray:
    """The utterance without espeak's leading and trailing silence."""
    loud = np.nonzero(np.abs(x) > np.abs(x).max() * 10 ** (db / 20))[0]
    return x[loud[0] : loud[-1] + 1]


def sox_signal(args: list[str], seconds: float, work: Path) -> np.ndarray:
    out = work / "sox.wav"
    filled = [a.replace("{d}", f"{seconds:.3f}") for a in args]
    subprocess.run(["sox", "-R", "-n", "-r", str(RATE), "-c", "1", "-b", "16", str(out), *filled], check=True)
    return sf.read(out, dtype="float32")[0][: int(seconds * RATE)]


def plucked(seconds: float, rng: random.Random, work: Path) -> np.ndarray:
    notes = [
        sox_signal(["synth", "0.25", "pluck", str(rng.choice([220, 247, 262, 294, 330, 392, 440]))], 0.25, work)
        for _ in range(int(seconds / 0.25))
    ]
    return np.concatenate(notes)


def positive(rng: random.Random, work: Path) -> tuple[np.ndarray, list[list[float]], str]:
    pieces, speech, at = [], [], 0
    voice, speed = rng.choice(VOICES), rng.choice(SPEEDS)
    for i in range(rng.randint(2, 4)):
        gap = np.zeros(int(rng.uniform(0.3 if i else 0.2, 1.2) * RATE), np.float32)
        utt = espeak(rng.choice(SENTENCES), voice, speed, rng.randint(30, 70), work) * rng.uniform(0.3, 0.9)
        pieces += [gap, utt]
        at += len(gap)
        speech.append([at / RATE, (at + len(utt)) / RATE])
        at += len(utt)
    pieces.append(np.zeros(int(rng.uniform(0.3, 1.0) * RATE), np.float32))
    audio = np.concatenate(pieces)
    kind = f"speech {voice} {speed} wpm"
    if rng.random() < 0.4:  # a noise bed at about 20 dB under the speech
        bed = sox_signal(
            ["synth", "{d}", rng.choice(["pinknoise", "brownnoise"]), "vol", "0.03"], len(audio) / RATE + 0.1, work
        )
        audio = audio + bed[: len(audio)]
        kind += " + noise"
    return audio, speech, kind


def negative(rng: random.Random, work: Path) -> tuple[np.ndarray, list[list[float]], str]:
    name, args = rng.choice(NEGATIVES)
    seconds = rng.uniform(3.0, 6.0)
    audio = plucked(seconds, rng, work) if args is None else sox_signal(args, seconds, work)
    return audio, [], name


def generate(out: Path, clips: int = 40, seed: int = 0, negative_share: float = 0.3) -> dict[str, dict]:
    rng = random.Random(seed)
    out.mkdir(parents=True, exist_ok=True)
    labels = {}
    with tempfile.TemporaryDirectory(prefix="speech-gen-") as tmp:
        for i in range(clips):
            audio, speech, kind = (negative if rng.random() < negative_share else positive)(rng, Path(tmp))
            audio = np.clip(audio, -1.0, 1.0)
            name = f"clip{i:03d}"
            sf.write(out / f"{name}.wav", audio, RATE, subtype="PCM_16")
            labels[name] = {"rate": RATE, "samples": len(audio), "speech": speech, "kind": kind}
    (out / "labels.json").write_text(json.dumps(labels, indent=1))
    return labels


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--clips", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    started = time.perf_counter()
    labels = generate(args.out, args.clips, args.seed)
    seconds = sum(v["samples"] / v["rate"] for v in labels.values())
    print(f"{len(labels)} clips, {seconds:.1f} s of audio in {time.perf_counter() - started:.1f} s")
