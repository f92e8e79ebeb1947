"""Session 56 (workplace VM): cProfile of a tokenizer process's loop (tokenize_worker.serve, run on a thread of this
process over a pipe pair, as the child runs it) over three passes of S chunks of 2 KB of the manual pages a call.
SORT: a pstats key (tottime, ncalls).

    python3 bench/results/2026-12-07-s56/child_prof.py 1 ncalls
"""
import gzip, sys, time, os, threading, cProfile, pstats
os.environ["TOKENIZERS_PARALLELISM"] = "false"
from multiprocessing.connection import Connection
from streamret.engine.config import EngineConfig
from streamret.engine.text import TextAssembler
from streamret.engine import tokenize_worker as tw
from streamret.model.spec import load_model
raw = gzip.open(".device/text/man.txt.gz", "rb").read(3_000_000)
chunks = [raw[i:i + 2048] for i in range(0, len(raw), 2048)]
params = EngineConfig().text_params
tok = load_model("default", device="cpu").tokenizer
S = int(sys.argv[1])
req_r, req_w = os.pipe(); res_r, res_w = os.pipe()
child_in, child_out = Connection(req_r, writable=False), Connection(res_w, readable=False)
send, recv = Connection(req_w, readable=False), Connection(res_r, writable=False)
prof = cProfile.Profile()
def child():
    prof.enable()
    tw.serve(child_in, child_out, str(tw.TOKENIZER_PY), str(tw.ENGINE_DIR))
    prof.disable()
t = threading.Thread(target=child); t.start()
send.send((tw.child_spec(tok), params)); print(recv.recv())
per = min(len(chunks) // S, 400)
for rep in range(3):
    fronts = [TextAssembler(**params).snapshot() for _ in range(S)]
    for j in range(per):
        wire = [((f.tail, f.offset, f.segment_start), chunks[s * per + j], "") for s, f in enumerate(fronts)]
        send.send(wire); got = tw.split_reply(recv.recv())
        fronts = [g.front for g in got]
send.close(); t.join()
st = pstats.Stats(prof); st.sort_stats(sys.argv[2] if len(sys.argv) > 2 else "tottime").print_stats(40)
