import gzip, sys, time, cProfile, pstats
sys.path.insert(0, '/work/main')
from streamret.engine import text as T
params = dict(max_tail_bytes=4096, segment_by="sentence", max_segment_bytes=1024)
raw = gzip.open('/work/main/.device/text/man.txt.gz', 'rb').read(2_000_000)
cb = int(sys.argv[1]) if len(sys.argv) > 1 else 2048
chunks = [raw[i:i + cb] for i in range(0, len(raw), cb)]
def run():
    snap, pieces, ends = T.TextSnapshot(b"", 0), 0, 0
    for c in chunks:
        a = T.TextAssembler(snapshot=snap, **params); out = a.feed(c); snap = a.snapshot()
        pieces += len(out); ends += sum(p.ends_segment for p in out)
    return pieces, ends
run()
t = time.process_time(); pieces, ends = run(); dt = time.process_time() - t
print(f"{cb}: {dt*1e3:.1f} ms CPU for {len(raw)} bytes (~{len(raw)/4.1/1e3:.0f} k tokens): {pieces} pieces, {ends} ends, {dt/ends*1e6:.2f} us/end, {dt/len(raw)*4.1e6*1e-3:.3f} us/token(est)")
if len(sys.argv) > 2:
    cProfile.run('run()', '/tmp/cut.prof'); pstats.Stats('/tmp/cut.prof').sort_stats('tottime').print_stats(25)
