import math
import sys
import time
import numpy as np, torch
from torch import nn
from models import movielens  # run from the repository root: PYTHONPATH=. python ...
D = str(movielens.data_file(movielens.INTERACTIONS).parent) + "/"
W=int(sys.argv[1]) if len(sys.argv)>1 else 50
DIM=int(sys.argv[2]) if len(sys.argv)>2 else 64
NEG=int(sys.argv[3]) if len(sys.argv)>3 else 256
torch.manual_seed(0); np.random.seed(0)
inter=np.loadtxt(D+"ml-100k.inter",skiprows=1,dtype=np.int64)
items=sorted({int(l.split("\t")[0]) for l in open(D+"ml-100k.item").read().splitlines()[1:]})
index={m:i for i,m in enumerate(items)}; n=len(items); PAD=n
order=np.lexsort((inter[:,1],inter[:,3],inter[:,0]))
inter=inter[order]
seqs={}
for u,m,r,t in inter: seqs.setdefault(int(u),[]).append(index[int(m)])
train={u:s[:-2] for u,s in seqs.items()}; val={u:s[-2] for u,s in seqs.items()}; test={u:s[-1] for u,s in seqs.items()}
def pack(hist_vec, excl, L):
    row=np.full((3,L),PAD,np.int64); row[1:]=0
    ids=list(excl); row[0,:len(ids)]=ids; row[2,:len(ids)]=1
    # vector ids: mark the last W of hist_vec
    pos={i:k for k,i in enumerate(ids)}
    for i in hist_vec: row[1,pos[i]]=1
    return row
# training examples: prefix windows
X=[];Y=[]
for u,s in train.items():
    for t in range(1,len(s)):
        h=s[max(0,t-W):t]
        r=np.full((3,W),PAD,np.int64); r[1:]=0; r[0,:len(h)]=h; r[1,:len(h)]=1
        X.append(r);Y.append(s[t])
X=torch.from_numpy(np.stack(X)); Y=torch.tensor(Y)
print("train examples",len(X))
pop=np.bincount(np.concatenate([np.array(s) for s in train.values()]),minlength=n)
def evalset(histf, tgt):
    us=sorted(seqs); L=max(len(histf(u)) for u in us)
    xs=[];ys=[]
    for u in us:
        h=histf(u); xs.append(pack(h[-W:] if len(set(h))==len(h) else h[-W:],h,L)); ys.append(tgt[u])
    return torch.from_numpy(np.stack(xs)),torch.tensor(ys)
Xv,Yv=evalset(lambda u:train[u],val); Xt,Yt=evalset(lambda u:train[u]+[val[u]],test)
class M(nn.Module):
    def __init__(s):
        super().__init__()
        s.hist=nn.Embedding(n+1,DIM,padding_idx=PAD); s.tower=nn.Sequential(nn.Linear(DIM,DIM),nn.ReLU(),nn.Linear(DIM,DIM))
        s.items=nn.Embedding(n,DIM); s.bias=nn.Parameter(torch.zeros(n))
    def user(s,x):
        ids,use=x[:,0],x[:,1].float()
        e=s.hist(ids)*use.unsqueeze(-1); return s.tower(e.sum(1)/use.sum(1,keepdim=True).clamp(min=1))
    def scores(s,x): return s.user(x)@s.items.weight.T+s.bias
    def forward(s,x,K=100):
        sc=s.scores(x); ex=torch.zeros(x.shape[0],n+1).scatter_(1,x[:,0],x[:,2].float())[:,:n]
        sc=sc.masked_fill(ex>0,-1e9); t=torch.topk(sc,K); return torch.stack([t.values,t.indices.float()],1)
m=M(); opt=torch.optim.AdamW(m.parameters(),lr=2e-3,weight_decay=1e-4)
def metrics(out,y):
    ids=out[:,1,:10].long(); hit=(ids==y[:,None]); rank=hit.float().argmax(1)
    hr=hit.any(1).float(); nd=torch.where(hit.any(1),1/torch.log2(rank.float()+2),torch.zeros(1))
    return hr.mean().item(), nd.mean().item()
def popmetrics(X,y):
    sc=torch.from_numpy(pop.astype(np.float32)).expand(len(X),n).clone()
    ex=torch.zeros(len(X),n+1).scatter_(1,X[:,0],X[:,2].float())[:,:n]; sc=sc.masked_fill(ex>0,-1e9)
    t=torch.topk(sc,10).indices; hit=t==y[:,None]; rank=hit.float().argmax(1)
    return hit.any(1).float().mean().item(), torch.where(hit.any(1),1/torch.log2(rank.float()+2),torch.zeros(1)).mean().item()
print("popularity val",popmetrics(Xv,Yv),"test",popmetrics(Xt,Yt))
best=1e9;bad=0
for ep in range(40):
    t0=time.time(); m.train(); tot=0
    for idx in torch.randperm(len(X)).split(512):
        x,y=X[idx],Y[idx]; u=m.user(x)
        neg=torch.randint(0,n,(NEG,))
        cand=torch.cat([y,neg]) if False else None
        pos=(u*m.items(y)).sum(1)+m.bias[y]
        ng=u@m.items(neg).T+m.bias[neg] - math.log(NEG/n)*0
        logits=torch.cat([pos[:,None],ng],1)
        loss=nn.functional.cross_entropy(logits,torch.zeros(len(y),dtype=torch.long))
        opt.zero_grad(); loss.backward(); opt.step(); tot+=loss.item()*len(y)
    m.eval()
    with torch.no_grad():
        vl=nn.functional.cross_entropy(m.scores(Xv),Yv).item()
        mv=metrics(m(Xv),Yv); mt=metrics(m(Xt),Yt)
    print(ep,f"{time.time()-t0:.1f}s train {tot/len(X):.3f} val_ce {vl:.3f} val {mv} test {mt}",flush=True)
    if vl<best: best=vl;bad=0
    else:
        bad+=1
        if bad>=4: break
