"""Per-row int8 for the MatMuls that static scales quantize badly.

Static int8 (one activation scale per tensor, fixed at build time) keeps each answer independent
of its batchmates but loses too much where a layer's inputs vary a lot from token to token.
Scales computed at run time for each row (a token: the last axis is the reduced one) keep that
independence, since a row's scale reads only that row, and fit each token's own range.

ONNX Runtime has no operator for it (DynamicQuantizeLinear scales the whole tensor,
MatMulIntegerToFloat takes A's scale per tensor or per column, and its MatMulInteger takes one
zero point for A), so the graph spells it out:
asymmetric uint8 rows, int8 weights per output column, an integer MatMul, and the zero points
taken out afterwards as `zero_point x column sums of the weight` (exact in integers).
"""

from __future__ import annotations

import numpy as np

UINT8_TOP = 255.0
INT8_TOP = 127.0
SMALLEST_SCALE = 1e-8  # an all-zero row still divides by something


def quantize_rows(model, names: set[str]) -> int:
    """Rewrite the float32 MatMuls named `names` (weight a constant) of an `onnx.ModelProto` in
    place; returns how many it rewrote. Rows reading the same tensor are quantized once."""
    from onnx import TensorProto, helper, numpy_helper

    graph = model.graph
    weights = {init.name: init for init in graph.initializer}
    nodes, constants, rows = [], [], {}

    def constant(value: np.ndarray, name: str) -> str:
        constants.append(numpy_helper.from_array(value, name))
        return name

    def emitter(prefix: str):
        def emit(op: str, inputs: list[str], output: str, **attributes) -> str:
            nodes.append(helper.make_node(op, inputs, [prefix + output], name=prefix + output, **attributes))
            return prefix + output

        return emit

    last = constant(np.array([-1], np.int64), "per_row_axis")
    zero = constant(np.array(0.0, np.float32), "per_row_zero")
    top = constant(np.array(UINT8_TOP, np.float32), "per_row_top")
    smallest = constant(np.array(SMALLEST_SCALE, np.float32), "per_row_smallest")

    def quantized(x: str) -> tuple[str, str, str]:
        """(uint8 rows, scale, zero point) of tensor `x`; the range always holds 0, so the zero
        point is an integer in [0, 255] and padding zeros stay exact."""
        if x not in rows:
            emit = emitter(f"per_row_{len(rows)}_")
            low = emit("Min", [emit("ReduceMin", [x, last], "min", keepdims=1), zero], "low")
            high = emit("Max", [emit("ReduceMax", [x, last], "max", keepdims=1), zero], "high")
            scale = emit("Max", [emit("Div", [emit("Sub", [high, low], "range"), top], "step"), smallest], "scale")
            zero_point = emit("Round", [emit("Neg", [emit("Div", [low, scale], "low_steps")], "offset")], "zp")
            shifted = emit("Add", [emit("Round", [emit("Div", [x, scale], "steps")], "rounded"), zero_point], "shifted")
            clipped = emit("Clip", [shifted, zero, top], "clipped")
            rows[x] = (emit("Cast", [clipped], "uint8", to=TensorProto.UINT8), scale, zero_point)
        return rows[x]

    rewritten = 0
    for node in graph.node:
        if node.name not in names:
            nodes.append(node)
            continue
        if node.op_type != "MatMul" or node.input[1] not in weights:
            raise ValueError(
                f"{node.name} is a {node.op_type} without a constant weight: it cannot be quantized per row"
            )
        x, w_name = node.input
        w = numpy_helper.to_array(weights[w_name]).astype(np.float32)
        w_scale = (np.maximum(np.abs(w).max(0), SMALLEST_SCALE) / INT8_TOP).astype(np.float32)
        w_int8 = np.clip(np.round(w / w_scale), -INT8_TOP, INT8_TOP).astype(np.int8)
        column_sums = w_int8.astype(np.int32).sum(0).astype(np.float32)  # |sum| <= 127 x rows: exact
        q, scale, zero_point = quantized(x)
        emit = emitter(f"{node.name}_per_row_")
        products = emit("MatMulInteger", [q, constant(w_int8, f"{node.name}_per_row_w")], "int32")
        shift = emit("Mul", [zero_point, constant(column_sums, f"{node.name}_per_row_column_sums")], "shift")
        centred = emit("Sub", [emit("Cast", [products], "float", to=TensorProto.FLOAT), shift], "centred")
        row_scaled = emit("Mul", [centred, scale], "row_scaled")
        w_scaled = constant(w_scale, f"{node.name}_per_row_w_scale")
        nodes.append(helper.make_node("Mul", [row_scaled, w_scaled], list(node.output), name=f"{node.name}_per_row"))
        rewritten += 1

    used = {name for node in nodes for name in node.input}
    kept = [init for init in graph.initializer if init.name in used]  # the float32 weights go
    del graph.node[:], graph.initializer[:]
    graph.node.extend(nodes)
    graph.initializer.extend(kept + constants)
    return rewritten
