import json, numpy as np, torch
torch.set_num_threads(1)
from pathlib import Path
from handlers.codec import Limits
from handlers.contracts import AudioContract
from handlers.codecs import audio as A
C, L = AudioContract(), Limits(max_body_bytes=16 << 20)
SET = Path("/tmp/speech-set"); labels = json.loads((SET / "labels.json").read_text())
ts = torch.jit.load("/tmp/speech-work/silero_seq.pt")
for k, lab in labels.items():
    if not lab["speech"]: continue
    a = A.decode_file((SET / f"{k}.wav").read_bytes(), C, L)
    with torch.inference_mode(): p = ts(torch.from_numpy(A.frames(a, C)[None])).numpy()[0]
    segs = [(s/16000, e/16000) for s, e in A.speech_segments(p, len(a), C)]
    for s, e in lab["speech"]:
        b = max(segs, key=lambda g: min(e, g[1]) - max(s, g[0]))
        if abs(b[0]-s) > 0.15 or abs(b[1]-e) > 0.3: print(k, lab["kind"], "truth", (round(s,3), round(e,3)), "pred", (round(b[0],3), round(b[1],3)), "n pred", len(segs), "n truth", len(lab["speech"]))
