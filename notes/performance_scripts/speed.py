import time, numpy as np, onnxruntime as ort
def sess(p, threads=1):
    o=ort.SessionOptions(); o.intra_op_num_threads=threads; o.inter_op_num_threads=1
    o.graph_optimization_level=ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(p,o,providers=["CPUExecutionProvider"])
rng=np.random.default_rng(0)
def batch(n,L):
    ids=rng.integers(1000,20000,(n,L)); ids[:,0]=101; ids[:,-1]=102
    mask=np.ones((n,L),dtype=np.int64); 
    if n>1: mask[1:, L//2:]=0; ids[1:, L//2:]=0
    return np.stack([ids,mask],1).astype(np.int64)
files={"dyn":"fused_dyn.onnx","dynmm":"fused_dyn_mm.onnx","opt":"/tmp/tsbuilds/artifacts/minilm/onnx/minilm.opt.onnx","fused":"fused2.onnx","int8":"/tmp/tsbuilds/artifacts/minilm/int8/minilm.int8.onnx"}
S={k:sess(v) for k,v in files.items()}
for n,L in [(1,16),(8,16),(16,32)]:
    x=batch(n,L)
    ref=S["opt"].run(None,{"input":x})[0]
    for k,s in S.items():
        y=s.run(None,{"input":x})[0]
        for _ in range(3): s.run(None,{"input":x})
        t=time.perf_counter(); r=0
        while time.perf_counter()-t<2: s.run(None,{"input":x}); r+=1
        dt=(time.perf_counter()-t)/r
        cos=(y*ref).sum(1)/np.linalg.norm(y,axis=1)/np.linalg.norm(ref,axis=1)
        print(f"n={n} L={L} {k:6s} {dt*1000:7.2f} ms  {n/dt:7.1f} rows/s  maxdiff {np.abs(y-ref).max():.2e} cosmin {cos.min():.5f}")
