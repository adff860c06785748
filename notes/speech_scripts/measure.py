"""Measurements for notes/speech.md. PYTHONPATH=/work/wip-26, one thread everywhere."""
import json, time, sys, numpy as np, torch, onnxruntime as ort
from pathlib import Path
torch.set_num_threads(1)
from handlers.codec import Limits
from handlers.contracts import AudioContract
from handlers.codecs import audio as A
import silero_vad
from silero_vad.utils_vad import get_speech_timestamps_from_probs, OnnxWrapper
C, L = AudioContract(), Limits(max_body_bytes=16 << 20)
SET = Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/speech-set")
labels = json.loads((SET / "labels.json").read_text())
clips = {k: A.decode_file((SET / f"{k}.wav").read_bytes(), C, L) for k in labels}
ts = torch.jit.load("/tmp/speech-work/silero_seq.pt")
o = ort.SessionOptions(); o.intra_op_num_threads = 1; o.inter_op_num_threads = 1
onx = ort.InferenceSession("/tmp/speech-work/silero_seq.onnx", o, providers=["CPUExecutionProvider"])
def run_ts(x): 
    with torch.inference_mode(): return ts(torch.from_numpy(x)).numpy()
def run_onnx(x): return onx.run(None, {"frames": x})[0]
res = {}
# 1. parity and replication of silero's own streaming wrappers on real audio
stock_jit = silero_vad.load_silero_vad(); stock_onnx = silero_vad.load_silero_vad(onnx=True)
d_tsonnx = d_stockjit = d_stockonnx = 0.0; probs_ts = {}
for k, a in clips.items():
    f = A.frames(a, C)[None]
    p1, p2 = run_ts(f)[0], run_onnx(f)[0]
    probs_ts[k] = p1
    d_tsonnx = max(d_tsonnx, float(np.abs(p1 - p2).max()))
    if k in list(clips)[:8]:
        stock_jit.reset_states(); stock_onnx.reset_states()
        t = torch.from_numpy(np.pad(a, (0, len(f[0]) * 512 - len(a))))
        sj = np.array([stock_jit(t[i:i+512], 16000).item() for i in range(0, len(t), 512)])
        so = np.array([stock_onnx(t[i:i+512], 16000).item() for i in range(0, len(t), 512)])
        d_stockjit = max(d_stockjit, float(np.abs(sj - p1).max())); d_stockonnx = max(d_stockonnx, float(np.abs(so - p2).max()))
res["parity"] = {"clips": len(clips), "chunks": int(sum(len(p) for p in probs_ts.values())),
  "max_abs_diff_torchscript_vs_onnx": d_tsonnx, "max_abs_diff_seq_ts_vs_stock_jit_loop(8 clips)": d_stockjit, "max_abs_diff_seq_onnx_vs_stock_OnnxWrapper(8 clips)": d_stockonnx}
print(res["parity"], flush=True)
# 2. state isolation: each of 6 clips alone vs inside batches of 8 (various positions, other lengths)
keys = list(clips); rng = np.random.default_rng(1); iso = {"torchscript": 0.0, "onnx": 0.0}
for trial in range(6):
    members = [keys[i] for i in rng.choice(len(keys), 8, replace=False)]
    batch = A.collate([A.frames(clips[m], C)[None] for m in members])
    for name, run in (("torchscript", run_ts), ("onnx", run_onnx)):
        out = run(batch)
        for j, m in enumerate(members):
            alone = run(A.frames(clips[m], C)[None])[0]
            iso[name] = max(iso[name], float(np.abs(out[j, : len(alone)] - alone).max()))
iso["batches"] = "6 batches of 8 clips, lengths %d-%d chunks" % (min(len(p) for p in probs_ts.values()), max(len(p) for p in probs_ts.values()))
res["isolation_max_abs_diff"] = iso; print(iso, flush=True)
# 3. timings: per chunk step, one thread, T = 100 chunks (3.2 s)
def timeit(f, n):
    f(); t = time.perf_counter()
    for _ in range(n): f()
    return (time.perf_counter() - t) / n
tim = {}
T = 100
inner = torch.jit.load(silero_vad.utils_vad.__file__.replace("utils_vad.py", "data/silero_vad.jit"))._model
step = ort.InferenceSession(str(Path(silero_vad.__file__).parent / "data/silero_vad.onnx"), o, providers=["CPUExecutionProvider"])
sr = np.array(16000, np.int64)
for B in (1, 8, 32):
    x = (np.random.default_rng(B).standard_normal((B, T, 576)) * 0.1).astype(np.float32)
    n = 5 if B < 32 else 3
    seq_ts = timeit(lambda: run_ts(x), n) / T * 1e3
    seq_onnx = timeit(lambda: run_onnx(x), n) / T * 1e3
    def loop_ts():
        s = torch.zeros(2, B, 128)
        with torch.inference_mode():
            for t in range(T): _, s = inner(torch.from_numpy(x[:, t]), s)
    def loop_onnx():
        s = np.zeros((2, B, 128), np.float32)
        for t in range(T): _, s = step.run(None, {"input": x[:, t], "state": s, "sr": sr})
    lt = timeit(loop_ts, n) / T * 1e3; lo = timeit(loop_onnx, n) / T * 1e3
    tim[f"B={B}"] = {"ts_sequence_ms_per_step": round(seq_ts, 3), "onnx_scan_ms_per_step": round(seq_onnx, 3),
                     "ts_python_loop_ms_per_step": round(lt, 3), "onnx_python_loop_ms_per_step": round(lo, 3),
                     "ts_sequence_us_per_row_chunk": round(seq_ts / B * 1e3, 1), "onnx_scan_us_per_row_chunk": round(seq_onnx / B * 1e3, 1)}
    print(B, tim[f"B={B}"], flush=True)
x = (np.random.default_rng(0).standard_normal((1, 1875, 576)) * 0.1).astype(np.float32)
tim["60s_one_request_ms"] = {"torchscript": round(timeit(lambda: run_ts(x), 3) * 1e3, 1), "onnx": round(timeit(lambda: run_onnx(x), 3) * 1e3, 1)}
x8 = np.repeat(x, 8, 0)
tim["60s_x8_requests_ms"] = {"torchscript": round(timeit(lambda: run_ts(x8), 2) * 1e3, 1), "onnx": round(timeit(lambda: run_onnx(x8), 2) * 1e3, 1)}
res["timing"] = tim; print(tim, flush=True)
# 4. post-processing equals silero's own; quality against the labels
same = all(
    [(s["start"], s["end"]) for s in get_speech_timestamps_from_probs(list(map(float, probs_ts[k])), audio_length_samples=len(clips[k]))]
    == A.speech_segments(probs_ts[k], len(clips[k]), C) for k in clips)
tp = fp = fn = 0; starts, ends = [], []; missed = 0; neg_fa = 0; neg = 0; chunk_tp = chunk_fp = chunk_fn = 0
per_kind = {}
for k, lab in labels.items():
    n = len(clips[k]); ms = int(np.ceil(n / 16))
    truth = np.zeros(ms, bool)
    for s, e in lab["speech"]: truth[int(s * 1000): int(np.ceil(e * 1000))] = True
    segs = [(s / 16000, e / 16000) for s, e in A.speech_segments(probs_ts[k], n, C)]
    pred = np.zeros(ms, bool)
    for s, e in segs: pred[int(s * 1000): int(np.ceil(e * 1000))] = True
    tp += int((truth & pred).sum()); fp += int((~truth & pred).sum()); fn += int((truth & ~pred).sum())
    # raw chunk-level (threshold 0.5, no smoothing): chunk is speech if >= half its samples are
    ct = np.array([truth[int(i * 32): int(i * 32 + 32)].mean() >= 0.5 for i in range(len(probs_ts[k]))])
    cp = probs_ts[k] >= 0.5
    chunk_tp += int((ct & cp).sum()); chunk_fp += int((~ct & cp).sum()); chunk_fn += int((ct & ~cp).sum())
    if not lab["speech"]:
        neg += 1; neg_fa += bool(segs)
    for s, e in lab["speech"]:
        best = max(segs, key=lambda g: min(e, g[1]) - max(s, g[0]), default=None)
        if best is None or min(e, best[1]) - max(s, best[0]) <= 0: missed += 1; continue
        starts.append((best[0] - s) * 1000); ends.append((best[1] - e) * 1000)
    kind = lab["kind"].split(" ")[0] + (" +noise" if "noise" in lab["kind"] and lab["speech"] else "")
    d = per_kind.setdefault(kind, [0, 0, 0]); d[0] += int((truth & pred).sum()); d[1] += int((~truth & pred).sum()); d[2] += int((truth & ~pred).sum())
f1 = 2 * tp / (2 * tp + fp + fn); cf1 = 2 * chunk_tp / (2 * chunk_tp + chunk_fp + chunk_fn)
starts, ends = np.array(starts), np.array(ends)
res["quality"] = {"postprocessing_equals_silero_get_speech_timestamps_from_probs": same,
  "frame_f1_1ms": round(f1, 4), "precision": round(tp / (tp + fp), 4), "recall": round(tp / (tp + fn), 4),
  "chunk_f1_raw_threshold": round(cf1, 4),
  "segments": len(starts) + missed, "missed_segments": missed, "negative_clips": neg, "negative_clips_with_speech": neg_fa,
  "start_error_ms_mean_signed": round(float(starts.mean()), 1), "start_error_ms_mean_abs": round(float(np.abs(starts).mean()), 1), "start_error_ms_p90_abs": round(float(np.percentile(np.abs(starts), 90)), 1),
  "end_error_ms_mean_signed": round(float(ends.mean()), 1), "end_error_ms_mean_abs": round(float(np.abs(ends).mean()), 1), "end_error_ms_p90_abs": round(float(np.percentile(np.abs(ends), 90)), 1),
  "boundary_error_ms_mean_abs": round(float(np.abs(np.concatenate([starts, ends])).mean()), 1),
  "per_kind_f1": {k: round(2 * v[0] / max(1, 2 * v[0] + v[1] + v[2]), 3) if v[0] + v[2] else f"false-positive ms {v[1]}" for k, v in sorted(per_kind.items())}}
print(json.dumps(res["quality"], indent=1))
Path(f"/tmp/speech-work/measure-{SET.name}.json").write_text(json.dumps(res, indent=1))
