import time, torch, numpy as np, onnxruntime as ort
from pathlib import Path
from models import silero_vad as sv
torch.set_num_threads(1)
t = time.perf_counter(); seq = sv.scripted_sequence(); seq.save("/tmp/speech-work/silero_seq.pt"); print("scripted+saved %.2f s" % (time.perf_counter() - t))
t = time.perf_counter(); sv.onnx_sequence(Path("/tmp/speech-work/silero_seq.onnx")); print("onnx scan built+checked %.2f s" % (time.perf_counter() - t))
x = np.random.default_rng(0).standard_normal((3, 20, 576)).astype(np.float32) * 0.1
a = torch.jit.load("/tmp/speech-work/silero_seq.pt")(torch.from_numpy(x)).detach().numpy()
s = ort.InferenceSession("/tmp/speech-work/silero_seq.onnx", providers=["CPUExecutionProvider"])
print([(i.name, i.shape) for i in s.get_inputs()], [(o.name, o.shape) for o in s.get_outputs()])
b = s.run(None, {"frames": x})[0]
print(a.shape, b.shape, "max diff ts vs onnx (noise):", np.abs(a - b).max())
