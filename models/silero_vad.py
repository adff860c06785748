"""silero_vad: voice activity from silero-vad 6.2.3 (MIT), packaged with no training; its files
are SHA-256 pinned. notes/speech.md has the measurements behind every number here.

The model is recurrent: one speech probability per 512-sample chunk of 16 kHz mono audio, an
LSTM state (2, B, 128) = (h, c) carried from chunk to chunk, and each chunk's input prefixed
with the last 64 samples of the previous chunk (zeros before the first): rows of 576 samples.
The codec (handlers.codecs.audio.frames) builds those rows, so the context never lives in a
model; the state lives only inside one forward pass, starting at zero for every row. A
request therefore gets the same answer alone and in any batch, and no state survives a pass.

Both runtimes serve one graph `(B, T, 576) float32 -> (B, T) probabilities`, which the handlers'
runtimes take as they are (one input, one output):
- TorchScript: `SileroSequence`, a scripted loop over T around the wheel's own inner network
  (`silero_vad.jit`'s `_model`, whose forward(x, state) takes and returns the state);
- ONNX: the wheel's `silero_vad.onnx` step graph wrapped, unchanged, as the body of an ONNX
  `Scan` over T (`onnx_sequence`), built with the onnx package: no re-export.

The wheel is installed with --no-deps (its code is never imported at serving time).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
import torch
import torchmetrics
from torch import nn

from handlers.codec import Limits, Payload
from handlers.codecs import audio
from handlers.contracts import AudioContract
from training import pinned
from training.data import Split, Splits
from training.specs import ExportSettings, Gate, ModelSpec, ServingConfig

# silero-vad==6.2.3 (PyPI wheel), silero_vad/data/. Measured with sha256sum.
JIT_SHA256 = "e1122837f4154c511485fe0b9c64455f7b929c96fbb8d79fbdb336383ebd3720"
ONNX_SHA256 = "1a153a22f4509e292a94e67d6f9b85e8deb25b4988682b7e174c65279d8788e3"
SAMPLE_RATE = 16000
CHUNK = 512  # samples per probability at 16 kHz (32 ms)
CONTEXT = 64  # samples of the previous chunk each input starts with (silero 5+, 16 kHz)
STATE_SHAPE = (2, 128)  # (h and c, hidden) per row: the state is (2, B, 128)


def package_file(name: str) -> Path:
    """Where the pinned wheel keeps `name` (not checked: `verified` checks before use)."""
    return pinned.package_file("silero_vad", f"data/{name}")


def verified(name: str, sha256: str) -> Path:
    """A file of the pinned wheel, refused unless its SHA-256 is the recorded one."""
    return pinned.verified(package_file(name), sha256, "silero-vad==6.2.3 (pip install --no-deps)")


def inner_network(jit_path: Path | None = None) -> torch.jit.ScriptModule:
    """The wheel's 16 kHz network: forward(x (B, 576), state (2, B, 128)) -> (prob (B, 1), state).

    `silero_vad.jit` itself (VADRNNJITMerge) keeps state, context, last rate and last batch
    size as attributes and mutates them on every call; its `_model` (VADRNNJIT) does not.
    """
    path = jit_path or verified("silero_vad.jit", JIT_SHA256)
    return torch.jit.load(str(path), map_location="cpu").eval()._model


class SileroStep(nn.Module):
    """One chunk step with explicit per-row state: what a streaming caller would use."""

    def __init__(self, inner: torch.jit.ScriptModule) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.inner(x, state)


class SileroSequence(nn.Module):
    """(B, T, 576) chunk rows -> (B, T) speech probabilities, every row from a zero state.

    Rows shorter than T are padded by the codec's collate; their padded steps are computed and
    thrown away, and since the LSTM is row-wise they never touch another row.
    """

    def __init__(self, inner: torch.jit.ScriptModule) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        batch, steps = frames.shape[0], frames.shape[1]
        state = torch.zeros(2, batch, 128, dtype=frames.dtype, device=frames.device)
        probs = torch.zeros(batch, steps, dtype=frames.dtype, device=frames.device)
        for t in range(steps):
            out, state = self.inner(frames[:, t], state)
            probs[:, t] = out[:, 0]
        return probs


def scripted_sequence(jit_path: Path | None = None) -> torch.jit.ScriptModule:
    return torch.jit.script(SileroSequence(inner_network(jit_path)).eval())


def onnx_sequence(out: Path, onnx_path: Path | None = None) -> Path:
    """Write `silero_vad.onnx` wrapped in a Scan over T: input (B, T, 576) -> output (B, T).

    The step graph (inputs input, state, sr; outputs output, stateN) becomes the Scan body
    unchanged except that `sr` is a constant 16000 inside it. The initial state is zeros of
    (2, B, 128), B read from the input's shape.
    """
    import onnx
    from onnx import TensorProto, helper

    step = onnx.load(str(onnx_path or verified("silero_vad.onnx", ONNX_SHA256)))
    graph = step.graph
    sr = helper.make_node(
        "Constant", [], ["sr"], value=helper.make_tensor("sr_value", TensorProto.INT64, [], [SAMPLE_RATE])
    )
    state_in = helper.make_tensor_value_info("state", TensorProto.FLOAT, [2, None, 128])
    chunk_in = helper.make_tensor_value_info("input", TensorProto.FLOAT, [None, CHUNK + CONTEXT])
    state_out = helper.make_tensor_value_info("stateN", TensorProto.FLOAT, [2, None, 128])
    prob_out = helper.make_tensor_value_info("output", TensorProto.FLOAT, [None, 1])
    body = helper.make_graph(
        [sr, *graph.node], "silero_step", [state_in, chunk_in], [state_out, prob_out], list(graph.initializer)
    )

    def const(name: str, values: list[int]) -> onnx.NodeProto:
        return helper.make_node(
            "Constant", [], [name], value=helper.make_tensor(name, TensorProto.INT64, [len(values)], values)
        )

    nodes = [
        helper.make_node("Shape", ["frames"], ["frames_shape"]),
        const("zero", [0]),
        const("two", [2]),
        const("hidden", [128]),
        helper.make_node("Gather", ["frames_shape", "zero"], ["batch"], axis=0),
        helper.make_node("Concat", ["two", "batch", "hidden"], ["state_shape"], axis=0),
        helper.make_node(
            "ConstantOfShape",
            ["state_shape"],
            ["state0"],
            value=helper.make_tensor("zero_f", TensorProto.FLOAT, [1], [0.0]),
        ),
        helper.make_node(
            "Scan",
            ["state0", "frames"],
            ["state_last", "probs3"],
            body=body,
            num_scan_inputs=1,
            scan_input_axes=[1],
            scan_output_axes=[1],
        ),
        const("last_axis", [2]),
        helper.make_node("Squeeze", ["probs3", "last_axis"], ["probs"]),
    ]
    outer = helper.make_graph(
        nodes,
        "silero_vad_sequence",
        [helper.make_tensor_value_info("frames", TensorProto.FLOAT, ["batch", "steps", CHUNK + CONTEXT])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["batch", "steps"])],
    )
    model = helper.make_model(outer, opset_imports=list(step.opset_import), producer_name="tsforge")
    model.ir_version = step.ir_version
    onnx.checker.check_model(model, full_check=True)
    out.write_bytes(model.SerializeToString())
    return out


# --- the model spec --------------------------------------------------------------------------
CONTRACT = AudioContract(sample_rate=SAMPLE_RATE, chunk=CHUNK, context=CONTEXT)
EVAL = Path(__file__).with_name("silero_vad_eval")
# Clips of the labelled set per split (models/silero_vad_eval/generate.py, ~0.05 s a clip):
# val gates TorchScript and ONNX against the eager network, test gates the quality.
VAL_CLIPS, TEST_CLIPS = 20, 40


@dataclass
class SileroConfig:
    """Nothing to choose: the network is the pinned file's."""


def build(config: SileroConfig | None = None) -> SileroSequence:
    return SileroSequence(inner_network())


def adapt_weights(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The scripted file's 16 kHz network (`_model.*`) as this module's `inner.*` (its 8 kHz
    twin `_model_8k` is not served: the codec resamples everything to 16 kHz)."""
    return {f"inner.{k.removeprefix('_model.')}": v for k, v in state.items() if k.startswith("_model.")}


def frame_labels(speech: list[list[float]], steps: int) -> np.ndarray:
    """1 where a chunk lies at least half inside a labelled sentence, else 0."""
    starts = np.arange(steps) * CHUNK / SAMPLE_RATE
    labels = np.zeros(steps, np.int64)
    for start, end in speech:
        overlap = np.clip(np.minimum(starts + CHUNK / SAMPLE_RATE, end) - np.maximum(starts, start), 0, None)
        labels[overlap >= CHUNK / SAMPLE_RATE / 2] = 1
    return labels


@cache
def labelled(seed: int, clips: int) -> Split:
    """The generated clips read through the codec as served requests are: x (N, T, 576) chunk
    rows padded with zero rows to the longest clip, y (N, T) frame labels, -1 past a clip's end."""
    from models.silero_vad_eval.generate import generate

    with tempfile.TemporaryDirectory(prefix="silero-eval-") as tmp:
        labels = generate(Path(tmp), clips, seed)
        limits = Limits(max_body_bytes=64 << 20)
        rows = [
            audio.decode_request(Payload((Path(tmp) / f"{name}.wav").read_bytes(), "audio/wav"), CONTRACT, limits).rows[
                0
            ]
            for name in labels
        ]
    steps = max(len(r) for r in rows)
    x = np.zeros((len(rows), steps, CHUNK + CONTEXT), np.float32)
    y = np.full((len(rows), steps), -1, np.int64)
    for i, (row, meta) in enumerate(zip(rows, labels.values(), strict=True)):
        x[i, : len(row)] = row
        y[i, : len(row)] = frame_labels(meta["speech"], len(row))
    return Split(torch.from_numpy(x), torch.from_numpy(y))


def splits(seed: int) -> Splits:
    """No training split; val and test are two labelled sets spoken with different seeds."""
    empty = Split(torch.zeros((0, 1, CHUNK + CONTEXT)), torch.zeros((0, 1), dtype=torch.long))
    return Splits(empty, labelled(seed + 1, VAL_CLIPS), labelled(seed, TEST_CLIPS))


class FrameF1(torchmetrics.Metric):
    """Frame-level F1 of the served answer (silero's segments, the codec's rules) against the
    labelled sentences, over every clip's own chunks."""

    def __init__(self) -> None:
        super().__init__()
        for name in ("tp", "fp", "fn"):
            self.add_state(name, default=torch.tensor(0), dist_reduce_fx="sum")

    def update(self, probs: torch.Tensor, labels: torch.Tensor) -> None:
        for p, y in zip(probs.numpy(), labels.numpy(), strict=True):
            steps = int((y >= 0).sum())
            predicted = np.zeros(steps, bool)
            for start, end in audio.speech_segments(p[:steps], steps * CHUNK, CONTRACT):
                predicted[start // CHUNK : -(-end // CHUNK)] = True
            truth = y[:steps] == 1
            self.tp += int((predicted & truth).sum())
            self.fp += int((predicted & ~truth).sum())
            self.fn += int((~predicted & truth).sum())

    def compute(self) -> torch.Tensor:
        return 2 * self.tp.float() / (2 * self.tp + self.fp + self.fn).clamp(min=1)


SPEC = ModelSpec(
    name="silero_vad",
    contract=CONTRACT,
    model_config=SileroConfig,
    build=build,
    splits=splits,
    weights=lambda: verified("silero_vad.jit", JIT_SHA256),
    adapt_weights=adapt_weights,
    custom_metrics=lambda: torchmetrics.MetricCollection({"frame_f1": FrameF1()}),
    row_lengths=lambda split: (split.y >= 0).sum(1).tolist(),
    data_files=(EVAL / "generate.py",),
    # Measured on two espeak-ng sets of 40 clips: 0.976 and 0.978 (notes/speech.md).
    gate=Gate("frame_f1", 0.93),
    export=ExportSettings(onnx_graph=lambda path: onnx_sequence(path)),
    # One recording per request; a pass and a call at most 2,400 chunks of 32 ms: one 60 s
    # recording (1,875) beside shorter ones, or the sweep's batch of eight 9.4 s examples
    # (2,360). Chosen by a short request's latency beside eight clients sending 60 s OGGs
    # (bench/limits.py), 2026-12-08, ONNX Runtime, 10 s each: at 7,500 (four 60 s recordings a
    # call) p99 2.4 s, at 2,400 1.0 s, at 1,875 0.6 s but the examples' batch of eight no longer
    # fits (429s at c=32). At 2,400 a short recording still shares its call with one long one. A call admits audio files by their header before decoding any
    # (handlers.base), so what it defers costs no decoding. pass_seconds: (1, 1875, 576) on one
    # thread, TorchScript 0.59 s, ONNX Runtime 0.19 s (the slower runtime's, rounded up).
    # Decoding 60 s of 44.1 kHz stereo OGG Vorbis (the slowest format) takes 0.138 s
    # (notes/speech.md).
    serving=ServingConfig(
        batch_size=8,
        max_batch_delay_ms=5,
        workers=2,
        threads_per_worker=1,
        limits=(("max_rows", 1), ("max_pass_cost", 2400), ("max_call_cost", 2400)),
        pass_seconds=0.6,
        decode_seconds=0.15,
    ),
    example="speech.wav",
    provenance=(
        ("network and weights", "silero-vad 6.2.3 (PyPI wheel, silero_vad/data/), MIT, github.com/snakers4/silero-vad"),
        ("evaluation speech", "generated at build time with espeak-ng and sox (Debian)"),
    ),
)
