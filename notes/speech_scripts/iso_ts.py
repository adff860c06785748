import json, numpy as np, torch
torch.set_num_threads(1)
from pathlib import Path
from handlers.codec import Limits
from handlers.contracts import AudioContract
from handlers.codecs import audio as A
C, L = AudioContract(), Limits(max_body_bytes=16 << 20)
SET = Path("/tmp/speech-set"); labels = json.loads((SET / "labels.json").read_text())
clips = {k: A.decode_file((SET / f"{k}.wav").read_bytes(), C, L) for k in labels}
ts = torch.jit.load("/tmp/speech-work/silero_seq.pt")
def run(x):
    with torch.inference_mode(): return ts(torch.from_numpy(x)).numpy()
k = "clip001"; f = A.frames(clips[k], C)[None]; alone = run(f)[0]
for B in (2, 3, 4, 8, 16, 32):
    print("same clip x", B, "max diff vs alone:", np.abs(run(np.repeat(f, B, 0)) - alone).max())
for flag in (False,):
    torch.backends.mkldnn.enabled = flag
    a2 = run(f)[0]; b2 = run(np.repeat(f, 8, 0))
    print("mkldnn", flag, "alone changed by", np.abs(a2 - alone).max(), "x8 vs alone", np.abs(b2 - a2).max())
torch.backends.mkldnn.enabled = True
# does any clip's segment list change when batched?
keys = list(clips); rng = np.random.default_rng(1); changed = 0; total = 0
for trial in range(6):
    members = [keys[i] for i in rng.choice(len(keys), 8, replace=False)]
    out = run(A.collate([A.frames(clips[m], C)[None] for m in members]))
    for j, m in enumerate(members):
        a = run(A.frames(clips[m], C)[None])[0]; total += 1
        changed += A.speech_segments(out[j, :len(a)], len(clips[m]), C) != A.speech_segments(a, len(clips[m]), C)
print("segment lists changed by batching:", changed, "of", total)
