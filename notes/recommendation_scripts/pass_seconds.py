import time, numpy as np, torch, onnxruntime as ort
torch.set_num_threads(1)
from handlers.runtime import load
for path in ["/tmp/rec-art/movielens/torchscript/movielens.pt","/tmp/rec-art/movielens/onnx/movielens.onnx"]:
    rt = load(path, torch.device("cpu"), 1)
    for rows, L in [(1,5),(8,50),(8,737),(31,2048),(64,2048),(64,1024)]:
        x = np.full((rows,3,L),-1,np.int64); x[:,0]=np.random.randint(0,1682,(rows,L)); x[:,1]=1; x[:,2]=1
        rt(x); ts=[]
        for _ in range(5):
            t=time.perf_counter(); rt(x); ts.append(time.perf_counter()-t)
        print(path.rsplit('/',1)[1], rows, L, rows*L, f"{min(ts)*1000:.1f} ms")
