import sys, time, runpy, collections
sys.path.insert(0, '/work/main'); sys.path.insert(0, '/work/main/bench')
from streamret.engine import segments as SG
acc = collections.Counter(); cnt = collections.Counter()
def wrap(name):
    f = getattr(SG, name)
    def g(*a, **k):
        t = time.perf_counter(); r = f(*a, **k); acc[name] += time.perf_counter() - t; cnt[name] += 1; return r
    setattr(SG, name, g)
for n in sys.argv[1].split(','): wrap(n)
import streamret.engine.core as C
for n in sys.argv[1].split(','):
    if hasattr(C, n): setattr(C, n, getattr(SG, n))
sys.argv = ['engine_host.py', '--model', 'default', '--streams', sys.argv[2], '--chunk', sys.argv[3], '--man-text', '--no-model', '--rounds', sys.argv[4]]
try:
    runpy.run_path('/work/main/bench/engine_host.py', run_name='__main__')
except SystemExit: pass
steps = cnt['keep_segments'] or cnt['book_step']
print({k: round(v / steps * 1e6) for k, v in acc.items()}, 'us per step;', dict(cnt))
