import time, onnx, onnx_ir as ir
from onnxscript.rewriter import ort_fusions
from collections import Counter
m = ir.load("/tmp/tsbuilds/artifacts/minilm/onnx/minilm.onnx")
t=time.time()
m2, stats = ort_fusions.optimize_for_ort(m)
print(stats, time.time()-t)
ir.save(m2, "fused2.onnx")
p = onnx.load("fused2.onnx")
print(Counter(n.op_type for n in p.graph.node).most_common(20))
