"""Session 57 (workplace VM): cProfile of a tokenizer process's loop (tokenize_worker.serve on a thread over a pipe
pair, as session 56's child_prof.py) over the warm passes only (the first pass fills the word cache unprofiled), S
chunks of 2 KB of the manual pages a call. Prints the us a call of the functions by cumulative time.

    PYTHONPATH=bench:. python3 bench/results/2026-12-07-s57/child_warm_prof.py 1
"""
import cProfile
import gzip
import os
import pstats
import sys
import threading
from multiprocessing.connection import Connection

os.environ["TOKENIZERS_PARALLELISM"] = "false"
from streamret.engine import tokenize_worker as tw  # noqa: E402
from streamret.engine.config import EngineConfig  # noqa: E402
from streamret.engine.text import TextAssembler  # noqa: E402
from streamret.model.spec import load_model  # noqa: E402

raw = gzip.open(".device/text/man.txt.gz", "rb").read(3_000_000)
chunks = [raw[i:i + 2048] for i in range(0, len(raw), 2048)]
params = EngineConfig().text_params
tok = load_model("default", device="cpu").tokenizer
S = int(sys.argv[1])
req_r, req_w = os.pipe()
res_r, res_w = os.pipe()
child_in, child_out = Connection(req_r, writable=False), Connection(res_w, readable=False)
send, recv = Connection(req_w, readable=False), Connection(res_r, writable=False)
prof = cProfile.Profile()
warm = threading.Event()
plain_cut = tw.cut_and_encode


def cut_and_encode(*args):  # the child's calls, profiled on its thread once the warm passes begin
    if warm.is_set() and not getattr(prof, "on", False):
        prof.enable()
        prof.on = True
    return plain_cut(*args)


tw.cut_and_encode = cut_and_encode
t = threading.Thread(target=tw.serve, args=(child_in, child_out, str(tw.TOKENIZER_PY), str(tw.ENGINE_DIR)))
t.start()
send.send((tw.child_spec(tok), params))
print(recv.recv())
per = min(len(chunks) // S, 400)
for rep in range(3):
    if rep == 1:
        warm.set()
    fronts = [TextAssembler(**params).snapshot() for _ in range(S)]
    for j in range(per):
        wire = [((f.tail, f.offset, f.segment_start), chunks[s * per + j], "") for s, f in enumerate(fronts)]
        send.send(wire)
        got = tw.split_reply(recv.recv())
        fronts = [g.front for g in got]
send.close()
t.join()  # (the child's profiler runs until its loop ends: its last recv, EOF, is in the profile)
st = pstats.Stats(prof)
calls = 2 * per - 1  # (the first warm call's own work began before the profiler)
print(f"{calls} calls; us a call by cumulative time:")
rows = sorted(st.stats.items(), key=lambda kv: -kv[1][3])[:45]
for (file, line, fn), (cc, nc, tt, ct, _) in rows:
    print(f"{1e6 * ct / calls:8.1f} cum {1e6 * tt / calls:7.1f} own {nc / calls:6.1f}x  {os.path.basename(file)}:{line}({fn})")
