import onnx, os, silero_vad
D = os.path.join(os.path.dirname(silero_vad.__file__), "data")
m = onnx.load(f"{D}/silero_vad.onnx")
print("ir", m.ir_version, "opsets", [(o.domain, o.version) for o in m.opset_import], "producer", m.producer_name, m.producer_version)
g = m.graph
print("inputs", [i.name for i in g.input], "outputs", [o.name for o in g.output], "inits", len(g.initializer), "nodes", len(g.node))
for n in g.node: print(n.op_type, list(n.input), list(n.output), [a.name for a in n.attribute])
