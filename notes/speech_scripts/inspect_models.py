import torch, onnxruntime as ort, silero_vad, os
D = os.path.join(os.path.dirname(silero_vad.__file__), "data")
m = torch.jit.load(f"{D}/silero_vad.jit").eval()
print(type(m), m.original_name)
print("methods:", [n for n in dir(m) if not n.startswith("__")][:80])
for name, sub in m.named_children():
    print("child", name, type(sub), getattr(sub, "original_name", None))
    for n2, s2 in sub.named_children():
        print("   ", n2, getattr(s2, "original_name", None))
print("forward code:\n", m.code[:3000])
for name in ("_model", "_model_8k"):
    if hasattr(m, name):
        sub = getattr(m, name)
        print(f"== {name}.forward code:\n", sub.code[:3000])
print("buffers/attrs:", [ (k, getattr(m,k).shape if hasattr(getattr(m,k),'shape') else getattr(m,k)) for k in ("_state","_context","_last_sr","_last_batch_size") if hasattr(m,k)])
for f in sorted(os.listdir(D)):
    if f.endswith(".onnx"):
        s = ort.InferenceSession(f"{D}/{f}", providers=["CPUExecutionProvider"])
        print(f, "IN", [(i.name, i.shape, i.type) for i in s.get_inputs()], "OUT", [(o.name, o.shape, o.type) for o in s.get_outputs()])
