# Session 30: the tree's encode_pieces against 3b1f3aa's streamret/model/tokenizer.py (a worktree at /tmp/s30/base:
# git worktree add /tmp/s30/base 3b1f3aa), on random calls of manual-page pieces, a third with a non-plain character.
import sys, random, importlib.util, gzip
sys.path.insert(0, '/work/main')
from streamret.model.spec import load_model
from streamret.model import tokenizer as NEW
spec = importlib.util.spec_from_file_location("oldtok", "/tmp/s30/base/streamret/model/tokenizer.py")
OLD = importlib.util.module_from_spec(spec); sys.modules['oldtok'] = OLD; spec.loader.exec_module(OLD)
src = load_model("default", device="cpu").tokenizer
a = NEW.HFTokenizer.from_json(src.source_json, src.name); b = OLD.HFTokenizer.from_json(src.source_json, src.name)
raw = gzip.open('/work/main/.device/text/man.txt.gz', 'rb').read(1_000_000).decode()
rng = random.Random(1)
subs = ['café', 'naïve', '中文。', '—', '\x07', 'Ωmega', '🙂', '\u00a0', '\x7f', '\x0b', '[CLS]']
for trial in range(1000):
    items = []
    for _ in range(rng.randrange(1, 6)):
        ps = []
        for _ in range(rng.randrange(0, 8)):
            i = rng.randrange(len(raw) - 500); p = raw[i:i + rng.randrange(0, 400)]
            if rng.random() < 0.3:
                k = rng.randrange(len(p) + 1); p = p[:k] + rng.choice(subs) + p[k:]
            ps.append(p)
        items.append(ps)
    x, y = a.encode_pieces(items), b.encode_pieces(items)
    assert len(x[0]) == len(y[0]) and (x[0] == y[0]).all() and (x[1] == y[1]).all(), trial
print("same ids and piece ends on 1,000 random calls")
