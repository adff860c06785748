"""The live replay: a few held-out inputs and the gated export's answers to them, kept in the
archive (`replay.json`) so that `tsforge verify` can ask a running endpoint the same questions.

The sample is one Open Inference Protocol request, sent as tritonclient sends by default (binary
tensors). Its expected answer is what the exported file gives to that very request decoded as
the worker decodes it, so a deployment that answers otherwise runs another model, runtime or
handler. Answers agree within the parity gate's tolerance of the format (max |diff| for float
formats, each row's cosine for int8), and class labels exactly.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from handlers import oip
from handlers.codec import BINARY_HEADER, Limits, Payload, check_cost
from handlers.codecs import codec_for

if TYPE_CHECKING:  # `tsforge verify` compares answers without loading torch
    import torch

    from training.data import Split
    from training.specs import ModelSpec

REPLAY = "replay.json"
# At most this many held-out rows, and this many bytes of input (one 224 x 224 colour photo
# is 600 kB in float32): a replay is one request, within every limit the archive sets.
MAX_ROWS, MAX_INPUT_BYTES = 8, 1024 * 1024
FLOAT_TYPES = ("FP16", "FP32", "FP64")


def check_of(tolerance: float | None, cosine: tuple[float, float] | None) -> dict[str, float]:
    """How answers are compared: the export format's parity tolerance, or its per-row cosine."""
    return {"min_cosine": cosine[1]} if cosine else {"max_abs_diff": float(tolerance)}


def sample(
    spec: ModelSpec,
    exported: Callable[[torch.Tensor], torch.Tensor],
    held_out: Split,
    served_name: str,
    check: dict[str, float],
) -> dict[str, Any]:
    """The replay document: the request (headers and base64 body), the held-out rows it holds,
    and the exported model's answer to it, decoded as the worker decodes it."""
    import torch

    codec, contract = codec_for(spec.contract.kind), spec.contract
    limits = Limits.from_mapping(dict(spec.serving.limits))
    rows = held_out.x.numpy()
    row_bytes = max(1, rows[:1].nbytes)
    count = max(1, min(MAX_ROWS, limits.max_rows, len(rows), MAX_INPUT_BYTES // row_bytes))
    while True:  # fewer rows until the request fits the model's own budgets
        cases = np.unique(np.linspace(0, len(rows) - 1, count).round().astype(int))
        body, headers = oip.encode_request(codec.replay_inputs(rows[cases], contract))
        decoded = codec.decode_request(
            Payload(body, "application/octet-stream", headers[BINARY_HEADER]), contract, limits
        )
        if count == 1 or (decoded.cost <= limits.max_pass_cost and len(body) <= limits.max_body_bytes):
            break
        count //= 2
    check_cost(decoded, limits, codec.COST_UNIT)
    with torch.no_grad():
        outputs = exported(torch.from_numpy(decoded.rows)).numpy()
    answer = codec.encode_outputs(outputs, decoded, contract, served_name)
    return {
        "model": served_name,
        "held_out_rows": cases.tolist(),
        "check": check,
        "request": {"headers": headers, "body": base64.b64encode(body).decode("ascii")},
        "expected": _plain(answer),
    }


def request_of(replay: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
    return base64.b64decode(replay["request"]["body"]), dict(replay["request"]["headers"])


def compare(replay: dict[str, Any], answer: Any) -> tuple[list[str], float]:
    """(disagreements, one per case and output, and the worst figure: largest |diff| or lowest
    cosine) between the recorded answer and `answer`, a parsed Open Inference Protocol response."""
    if not isinstance(answer, dict) or not isinstance(answer.get("outputs"), list):
        return [f"the answer is not an Open Inference Protocol response: {str(answer)[:200]}"], float("nan")
    got = {o.get("name"): o for o in answer["outputs"] if isinstance(o, dict)}
    cases, check = replay["held_out_rows"], replay["check"]
    cosine = "min_cosine" in check
    problems, worst = [], 1.0 if cosine else 0.0
    for want in replay["expected"]["outputs"]:
        name, have = want["name"], got.get(want["name"])
        if have is None or have.get("shape") != want["shape"] or "data" not in have:
            shape = None if have is None else have.get("shape")
            problems.append(
                f"output {name!r}: {'missing' if have is None else f'shape {shape}'}, expected {want['shape']}"
            )
            continue
        expected = np.asarray(want["data"]).reshape(len(cases), -1)
        actual = np.asarray(have["data"]).reshape(len(cases), -1)
        for i, (e, a) in enumerate(zip(expected, actual, strict=True)):
            case = f"case {i} (held-out row {cases[i]})"
            if want["datatype"] not in FLOAT_TYPES:
                if not np.array_equal(e, a):
                    problems.append(f"{case}: {name} {_short(a)}, expected {_short(e)}")
            elif cosine:
                e64, a64 = e.astype(np.float64), a.astype(np.float64)
                cos = float(e64 @ a64 / max(np.linalg.norm(e64) * np.linalg.norm(a64), 1e-12))
                worst = min(worst, cos)
                if cos < check["min_cosine"]:
                    problems.append(f"{case}: {name} cosine {cos:.4f} < {check['min_cosine']:g}")
            else:
                diff = float(np.abs(e.astype(np.float64) - a.astype(np.float64)).max())
                worst = max(worst, diff)
                if not diff <= check["max_abs_diff"]:  # NaN disagrees too
                    problems.append(f"{case}: {name} max |diff| {diff:.3g} > {check['max_abs_diff']:g}")
    return problems, worst


def _short(values: np.ndarray) -> str:
    shown = values.tolist()
    return str(shown[0] if len(shown) == 1 else shown)[:60]


def _plain(answer: dict[str, Any]) -> dict[str, Any]:
    """The answer as JSON data (arrays as lists), as the server sends it."""
    outputs = [{**o, "data": np.asarray(o["data"]).ravel().tolist()} for o in answer["outputs"]]
    return {**answer, "outputs": outputs}
