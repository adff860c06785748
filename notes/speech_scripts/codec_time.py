import io, time, struct, numpy as np, soundfile as sf
from handlers.codec import Limits, Payload, RequestError
from handlers.contracts import AudioContract
from handlers.codecs import audio as A
C, L = AudioContract(), Limits(max_body_bytes=16 << 20)
speech, r = sf.read("/tmp/speech-set/clip000.wav", dtype="float32")
import soxr
x = np.tile(soxr.resample(speech, r, 44100), 30)[: 60 * 44100]; st = np.stack([x, 0.5 * x], 1)
def enc(data, fmt, sub, rate=44100):
    b = io.BytesIO()
    with sf.SoundFile(b, "w", rate, data.shape[1], format=fmt, subtype=sub) as f:
        for i in range(0, len(data), 65536): f.write(data[i:i+65536])
    return b.getvalue()
def t(f, n=5):
    f(); s = time.perf_counter()
    for _ in range(n): f()
    return (time.perf_counter() - s) / n * 1e3
for fmt, sub in (("WAV", "PCM_16"), ("FLAC", "PCM_16"), ("OGG", "VORBIS")):
    raw = enc(st, fmt, sub)
    print(f"decode_request 60 s 44.1 kHz stereo {fmt}: {len(raw)} bytes, {t(lambda: A.decode_request(Payload(raw), C, L)):.1f} ms (decode+mixdown+soxr HQ+frames)")
raw = enc(st[:, :1] * 0 + x[:, None], "WAV", "PCM_16", 44100)
mono16 = enc(soxr.resample(x, 44100, 16000)[:, None], "WAV", "PCM_16", 16000)
print(f"decode_request 60 s 16 kHz mono WAV ({len(mono16)} bytes): {t(lambda: A.decode_request(Payload(mono16), C, L)):.1f} ms")
def wav_header(ch, rate, frames, bits=16):
    data = min(frames*ch*bits//8, 0xFFFFFFFF - 36)
    return (b"RIFF"+struct.pack("<I", 36+data)+b"WAVE"+b"fmt "+struct.pack("<IHHIIHH",16,1,ch,rate,rate*ch*bits//8,ch*bits//8,bits)+b"data"+struct.pack("<I", data))
cases = {"8ch 384 kHz WAV header": wav_header(8, 384000, 10**12) + bytes(8*2*38400),
         "FLAC bomb 46 kB -> 60 s x 8 ch x 96 kHz": enc(np.zeros((60*96000, 8), np.float32), "FLAC", "PCM_16", 96000),
         "61 s WAV": enc(np.zeros((61*16000, 1), np.float32), "WAV", "PCM_16", 16000)}
for name, raw in cases.items():
    def go():
        try: A.decode_request(Payload(raw), C, L)
        except RequestError as e: return e
    e = go(); print(f"{name} ({len(raw)} bytes): {e.status} {e.code} in {t(go, 20):.2f} ms")
