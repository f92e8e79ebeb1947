# cold (first pass) encode on 2 KB chunks' pieces, 16 chunks a call, of a text of MB megabytes: TREE's tokenizer
import gzip, sys, time, importlib.util
tree, mb = sys.argv[1], float(sys.argv[2])
sys.path.insert(0, tree)
spec = importlib.util.spec_from_file_location("tk", tree + "/streamret/model/tokenizer.py")
TK = importlib.util.module_from_spec(spec); spec.loader.exec_module(TK)
from streamret.engine import text as T
tok = TK.HFTokenizer(tree + '/streamret/assets/default')
raw = gzip.open('/work/main/.device/text/man.txt.gz', 'rb').read(int(mb * 1e6))
params = dict(max_tail_bytes=4096, segment_by="sentence", max_segment_bytes=1024)
snap = T.TextSnapshot(b"", 0); calls = []
for i in range(0, len(raw), 2048):
    a = T.TextAssembler(snapshot=snap, **params); calls.append([p.text for p in a.feed(raw[i:i+2048])]); snap = a.snapshot()
batches = [calls[i:i+16] for i in range(0, len(calls), 16)]
out = []
for rep in range(int(sys.argv[3]) if len(sys.argv) > 3 else 2):
    n = 0; t = time.process_time()
    for b in batches: n += len(TK.encode_pieces(tok, b)[0])
    out.append((time.process_time() - t) / n * 1e6)
print(f"{tree:14s} {mb} MB: first pass {out[0]:.3f}, warm " + " ".join(f"{x:.3f}" for x in out[1:]))
