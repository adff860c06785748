import io, sys, numpy as np, soundfile as sf
fmt, sub, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
b = io.BytesIO(); x = (np.random.default_rng(0).standard_normal((n, 2))*0.1).astype(np.float32)
if len(sys.argv) > 4:
    with sf.SoundFile(b, "w", 44100, 2, format=fmt, subtype=sub) as f:
        for i in range(0, n, 4096): f.write(x[i:i+4096])
else:
    sf.write(b, x, 44100, format=fmt, subtype=sub)
print(fmt, sub, n, "ok", len(b.getvalue()))
