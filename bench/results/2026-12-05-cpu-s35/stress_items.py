"""Session 35: session 33's stress.py with list markers alone on their lines before blank lines among the extras.
Stress: the GPU's engine settings on the CPU (tokenizer processes, 3 threads, split bursts, draining cap 2, a small
step budget), many streams submitted windowed from several threads, chunks cut anywhere; every stream's tokens,
embedding, kept segments and summary against a reference engine that reads each text in one chunk."""
import gzip, random, sys, threading, time
from concurrent.futures import wait, FIRST_COMPLETED
sys.path.insert(0, '/work/main')
import numpy as np
from streamret.engine import Engine, EngineConfig
from streamret.errors import TooBusy
busy = [0]
from streamret.engine import state_store as _SS
import collections as _C
calls = _C.Counter()
for _n in ("_spill_host", "evict", "prefetch", "_load_cold") :
    if hasattr(_SS.StateStore, _n):
        def _w(f, n=_n):
            def g(*a, **k):
                calls[n] += 1; return f(*a, **k)
            return g
        setattr(_SS.StateStore, _n, _w(getattr(_SS.StateStore, _n)))

seed = int(sys.argv[1]) if len(sys.argv) > 1 else 0
n_streams = int(sys.argv[2]) if len(sys.argv) > 2 else 24
model = sys.argv[3] if len(sys.argv) > 3 else "default"
rng = random.Random(seed)
raw = gzip.open('/work/main/.device/text/man.txt.gz', 'rb').read(3_000_000)
extras = ["\n(a)\n\n", "\na)\n\n", "\n-\n\n", "\n3.\n\n", "é", "ß", "€", "日本", "😀", "\u00a0", "\n\n", " e.g. the", "Dr. No", "1. Intro", "\t", "  ", "...", "?!", "\r\n"]
texts = {}
for i in range(n_streams):
    a = rng.randrange(0, len(raw) - 20000)
    t = raw[a:a + rng.randrange(200, int(sys.argv[5]) if len(sys.argv) > 5 else 4000)].decode('utf-8', 'replace')
    parts = t.split(' ')
    for _ in range(rng.randrange(0, 20)):
        k = rng.randrange(len(parts)); parts[k] = parts[k] + rng.choice(extras)
    texts[f"s{i}"] = ' '.join(parts).encode('utf-8')
def cuts(b):
    pts = sorted(rng.randrange(0, len(b) + 1) for _ in range(rng.randrange(0, 12)))
    bounds = [0, *pts, len(b)]
    return [b[x:y] for x, y in zip(bounds, bounds[1:])]
chunks = {sid: cuts(b) for sid, b in texts.items()}
flushes = {sid: [False for _ in cs] for sid, cs in chunks.items()}

def read_all(eng, sids):
    out = {}
    for sid in sids:
        eng.flush(sid)
        info = eng.info(sid)
        segs = eng.segments(sid, with_embeddings=False)
        summ = eng.summarize(sid, k=int(__import__("os").environ.get("K", "4")))
        out[sid] = (info.tokens, eng.embedding(sid), [(s.text, s.start_byte, s.end_byte) for s in segs],
                    [(s.text, s.start_byte, s.end_byte) for s in summ.segments])
    return out

import json, os, tempfile
extra = json.loads(os.environ.get("CFG", "{}"))
sb = None
if os.environ.get("RESIDENT"):
    from streamret.model.spec import load_model
    sb = load_model(model, "cpu", None).model.config.state_bytes_per_stream()
    extra["device_state_bytes"] = int(os.environ["RESIDENT"]) * sb
    extra["host_state_bytes"] = int(os.environ.get("HOST", "2")) * sb
    extra["max_step_state_bytes"] = int(os.environ["RESIDENT"]) * sb
state_dir = tempfile.mkdtemp() if os.environ.get("STATE") else None
cfg = EngineConfig(**extra, tokenize_procs=True, tokenizer_threads=3, tokenize_split_bursts=True, draining_step_chunks=2,
                   max_step_tokens=int(sys.argv[4]) if len(sys.argv) > 4 else 512, durable_every_chunks=int(os.environ.get("DUR", "0")))
t0 = time.time()
with Engine.from_model(model, device="cpu", state_dir=state_dir, config=cfg) as eng:
    sids = list(texts)
    lock = threading.Lock()
    errors = []
    def driver(my):
        try:
            pending = {}
            nxt = {sid: 0 for sid in my}
            while True:
                for sid in my:
                    while nxt[sid] < len(chunks[sid]) and sum(1 for f in pending.values() if f[0] == sid) < 4:
                        k = nxt[sid]
                        while True:
                            try:
                                f = eng.submit_append(sid, k + 1, chunks[sid][k], flush=flushes[sid][k]); break
                            except TooBusy:
                                busy[0] += 1; time.sleep(0.005)
                        pending[f] = (sid, k)
                        nxt[sid] += 1
                if not pending:
                    return
                done, _ = wait(list(pending), return_when=FIRST_COMPLETED, timeout=120)
                for f in done:
                    ack = f.result()
                    assert not ack.duplicate
                    del pending[f]
        except Exception as e:
            errors.append(e); raise
    groups = [sids[i::4] for i in range(4)]
    threads = [threading.Thread(target=driver, args=(g,)) for g in groups]
    for t in threads: t.start()
    for t in threads: t.join()
    assert not errors, errors
    got = read_all(eng, sids)
    stats = eng.stats()
print(f"stressed in {time.time()-t0:.1f} s; steps {stats.get('steps')}; " + str({k: v for k, v in stats.items() if 'evict' in k or 'load' in k or 'spill' in k}))
ref_cfg = EngineConfig(tokenize_procs=False, tokenizer_threads=1, durable_every_chunks=0, max_step_tokens=1 << 15)
with Engine.from_model(model, device="cpu", config=ref_cfg) as ref:
    for sid, b in texts.items():
        ref.append(sid, 1, b)
    want = read_all(ref, list(texts))
bad = 0
for sid in texts:
    g, w = got[sid], want[sid]
    err = float(np.linalg.norm(g[1] - w[1]) / np.linalg.norm(w[1]))
    problems = []
    if g[0] != w[0]: problems.append(f"tokens {g[0]} != {w[0]}")
    if err > 1e-4: problems.append(f"embedding rel err {err:.2e}")
    if g[2] != w[2]:
        diff = next((i for i, (x, y) in enumerate(zip(g[2], w[2])) if x != y), min(len(g[2]), len(w[2])))
        problems.append(f"segments differ ({len(g[2])} vs {len(w[2])}) first at {diff}: {g[2][diff:diff+1]} vs {w[2][diff:diff+1]}")
    if g[3] != w[3]: problems.append("summary differs")
    if problems:
        bad += 1
        print(sid, len(texts[sid]), 'B', len(chunks[sid]), 'chunks', flushes[sid], problems)
print(dict(calls)); print(f"busy retries {busy[0]}; seed {seed}: {len(texts)} streams, {bad} differ")
