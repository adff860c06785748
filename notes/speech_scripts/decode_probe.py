import io, struct, time, numpy as np, soundfile as sf, soxr, scipy.signal as ss, warnings
print("libsndfile", sf.__libsndfile_version__, "soundfile", sf.__version__, "soxr", soxr.__version__)
rng = np.random.default_rng(0)
speech, r = sf.read("/tmp/speech-set/clip000.wav", dtype="float32")
x44 = soxr.resample(speech, r, 44100)
x44 = np.tile(x44, int(np.ceil(60*44100/len(x44))))[:60*44100]
st = np.stack([x44, 0.5*x44], 1)
def enc(fmt, subtype=None, data=st, rate=44100):
    # written in blocks: one sf.write of 60 s stereo as OGG Vorbis segfaults (libsndfile 1.2.2)
    b = io.BytesIO()
    with sf.SoundFile(b, "w", rate, data.shape[1], format=fmt, subtype=subtype) as f:
        for i in range(0, len(data), 65536): f.write(data[i:i+65536])
    return b.getvalue()
files = {"WAV": enc("WAV", "PCM_16"), "FLAC": enc("FLAC", "PCM_16"), "OGG": enc("OGG", "VORBIS"), "MP3": None}
try: files["MP3"] = enc("MP3", "MPEG_LAYER_III")
except Exception as e: print("mp3 write:", e); files.pop("MP3")
def t(f, n=20):
    f(); s=time.perf_counter()
    for _ in range(n): f()
    return (time.perf_counter()-s)/n*1000
for k, b in files.items():
    i = sf.info(io.BytesIO(b))
    print(f"{k}: {len(b)} bytes, info {t(lambda: sf.info(io.BytesIO(b))):.3f} ms: frames={i.frames} sr={i.samplerate} ch={i.channels} fmt={i.format} sub={i.subtype} dur={i.duration:.2f}; full read {t(lambda: sf.read(io.BytesIO(b), dtype='float32'), 3):.1f} ms")
# resampler timings, 60 s 44.1k mono -> 16k
m = st.mean(1).astype(np.float32)
print("mixdown mean(1) 60 s stereo: %.2f ms" % t(lambda: st.mean(1)))
w = np.full(2, 0.5, np.float32); print("mixdown st @ w: %.2f ms, same: %s" % (t(lambda: st @ w), np.allclose(st @ w, st.mean(1), atol=1e-6)))
print("dtype st", st.dtype)
for q in ("HQ", "VHQ", "MQ"):
    print(f"soxr {q}: {t(lambda: soxr.resample(m, 44100, 16000, quality=q), 5):.1f} ms")
print(f"scipy resample_poly 160/441: {t(lambda: ss.resample_poly(m, 160, 441), 5):.1f} ms")
print(f"soxr HQ 48k->16k: {t(lambda: soxr.resample(m[:60*48000] if len(m)>=60*48000 else np.resize(m,60*48000), 48000, 16000), 5):.1f} ms")
print(f"soxr HQ 8k->16k (60 s): {t(lambda: soxr.resample(m[:60*8000], 8000, 16000), 5):.1f} ms")
# lying WAV header: 10 h claimed, 1 s present
def wav_header(ch, rate, frames, bits=16):
    data = min(frames*ch*bits//8, 0xFFFFFFFF - 36)
    return (b"RIFF"+struct.pack("<I", 36+data)+b"WAVE"+b"fmt "+struct.pack("<IHHIIHH",16,1,ch,rate,rate*ch*bits//8,ch*bits//8,bits)+b"data"+struct.pack("<I", data))
lie = wav_header(1, 16000, 10*3600*16000) + (rng.standard_normal(16000)*3000).astype("<i2").tobytes()
i = sf.info(io.BytesIO(lie)); print("10h-claim WAV (%d bytes): info frames=%d dur=%.3f s; info %.3f ms" % (len(lie), i.frames, i.duration, t(lambda: sf.info(io.BytesIO(lie)))))
d = sf.read(io.BytesIO(lie), dtype="float32"); print("   read ->", d[0].shape)
big = wav_header(8, 384000, 10*3600*384000) + bytes(8*2*384000//10)
i = sf.info(io.BytesIO(big)); print("8ch 384k 10h-claim WAV (%d bytes): frames=%d sr=%d ch=%d dur=%.3f" % (len(big), i.frames, i.samplerate, i.channels, i.duration))
# 0xFFFFFFFF data size (streaming WAV)
stream = wav_header(1,16000,0)[:-4]+b"\xff\xff\xff\xff"+bytes(32000)
i = sf.info(io.BytesIO(stream)); print("data size 0xFFFFFFFF WAV: frames=%d dur=%.3f" % (i.frames, i.duration))
# FLAC expansion: silence 60 s 8ch 96k
sil = enc("FLAC", "PCM_16", np.zeros((60*96000, 8), np.float32), 96000)
i = sf.info(io.BytesIO(sil)); print("FLAC 60 s silence 8ch 96k: %d bytes -> %d samples = %.0f MB float32 (ratio %.0fx vs int16 %.0fx); info frames %d" % (len(sil), i.frames*i.channels, i.frames*i.channels*4/1e6, i.frames*i.channels*4/len(sil), i.frames*i.channels*2/len(sil), i.frames))
print("  bounded read frames=16000*60+1 at that rate: %.1f ms" % t(lambda: sf.read(io.BytesIO(sil), frames=60*16000+1, dtype='float32'), 3))
# FLAC with STREAMINFO total samples zeroed (unknown length)
fl = bytearray(files["FLAC"]); # STREAMINFO at offset 8: bytes 8+13..8+17 hold 4 bits of bps + 36 bits total samples
o = 8 + 13; fl[o] = fl[o] & 0xF0; fl[o+1:o+5] = b"\0\0\0\0"
i = sf.info(io.BytesIO(bytes(fl))); print("FLAC total_samples=0: info frames=%d dur=%.3f" % (i.frames, i.duration))
print("   sf.read(frames=-1) raises/allocates per header: do not use")
try:
    d = sf.read(io.BytesIO(bytes(fl)), frames=60*44100+1, dtype="float32"); print("   bounded read ->", d[0].shape)
except Exception as e: print("   bounded read ->", type(e).__name__, e)
fl2 = bytearray(files["FLAC"]); n=10*3600*44100; fl2[o] = (fl2[o] & 0xF0) | (n >> 32); fl2[o+1:o+5] = (n & 0xFFFFFFFF).to_bytes(4, "big")
i = sf.info(io.BytesIO(bytes(fl2))); print("FLAC total_samples=10 h (60 s present): info frames=%d dur=%.1f" % (i.frames, i.duration))
try:
    d = sf.read(io.BytesIO(bytes(fl2)), frames=61*44100, dtype="float32"); print("   bounded read 61 s ->", d[0].shape)
except Exception as e: print("   bounded read 61 s ->", type(e).__name__, e)
n=44100; fl2[o] = (fl2[o] & 0xF0) | (n >> 32); fl2[o+1:o+5] = (n & 0xFFFFFFFF).to_bytes(4, "big")
i = sf.info(io.BytesIO(bytes(fl2))); print("FLAC total_samples=1 s (60 s present): info frames=%d" % i.frames)
try:
    d = sf.read(io.BytesIO(bytes(fl2)), frames=61*44100, dtype="float32"); print("   bounded read 61 s ->", d[0].shape)
except Exception as e: print("   bounded read 61 s ->", type(e).__name__, e)
with sf.SoundFile(io.BytesIO(bytes(fl))) as f: print("   bounded read of 1000 frames ->", f.read(1000, dtype='float32').shape)
# truncated and corrupt
for k in ("WAV", "FLAC", "OGG"):
    b = files[k]
    for cut in (len(b)//2, 40, 10):
        try:
            with warnings.catch_warnings(record=True) as w:
                warnings.simplefilter("always")
                i = sf.info(io.BytesIO(b[:cut])); d, _ = sf.read(io.BytesIO(b[:cut]), frames=min(i.frames, 61*44100), dtype="float32")
            print(f"{k} cut at {cut}: info frames {i.frames}, read {d.shape}, warnings {[str(x.message)[:60] for x in w]}")
        except Exception as e:
            print(f"{k} cut at {cut}: {type(e).__mro__[:3]} {str(e)[:100]}")
    c = bytearray(b); c[len(c)//2: len(c)//2+2000] = rng.integers(0,256,2000,dtype=np.uint8).tobytes()
    try:
        d, _ = sf.read(io.BytesIO(bytes(c)), frames=min(sf.info(io.BytesIO(bytes(c))).frames, 61*44100), dtype="float32"); print(f"{k} corrupted middle: read {d.shape} finite={np.isfinite(d).all()} max={np.abs(d).max():.2f}")
    except Exception as e: print(f"{k} corrupted middle: {type(e).__name__} {str(e)[:100]}")
for junk in (b"", b"RIFF", rng.integers(0,256,5000,dtype=np.uint8).tobytes(), b"fLaC"+bytes(100), b"OggS"+bytes(100)):
    try: sf.info(io.BytesIO(junk)); print("junk accepted?!", junk[:8])
    except Exception as e: print(f"junk {junk[:6]!r}: {type(e).__name__}: {str(e)[:90]}; is RuntimeError {isinstance(e, RuntimeError)}")
