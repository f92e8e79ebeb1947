# Session 30: the old text front is 3b1f3aa's text.py and sentences.py in /tmp/old_text/oldpkg/ (as cut_ab.py).
"""Old text.py/sentences.py against the tree's: the same pieces and fronts on many texts and cuts."""
import gzip, random, sys, time
sys.path.insert(0, '/tmp/old_text'); sys.path.insert(0, '/work/main')
from oldpkg import text as OLD
from streamret.engine import text as NEW

raw = gzip.open('/work/main/.device/text/man.txt.gz', 'rb').read()
rng = random.Random(7)

def unicodeify(b: bytes) -> bytes:
    words = b.decode('utf-8', 'replace').split(' ')
    subs = ['café', 'naïve', '中文。', '日本語！', '“Quoted.”', '«dit»', '¿Qué?', 'Ωmega.', 'emoji🙂.', '‘tis', '…', 'x\u00a0y', 'Straße.']
    out = []
    for w in words:
        r = rng.random()
        out.append(rng.choice(subs) if r < 0.08 else (w + '.' if r < 0.12 else w))
    s = ' '.join(out).encode('utf-8')
    # a few invalid bytes
    s = bytearray(s)
    for _ in range(len(s) // 5000):
        s.insert(rng.randrange(len(s)), rng.choice([0x80, 0xff, 0xc3, 0xe2]))
    return bytes(s)

def listy(n: int) -> bytes:
    parts = []
    for i in range(n):
        k = rng.random()
        if k < 0.2: parts.append(f"\n{i % 50}:{i % 30} And it was so. ")
        elif k < 0.35: parts.append(f"\n- item {i} e.g. this. ")
        elif k < 0.45: parts.append(f"\n{i % 9}. Introduction\n\n")
        elif k < 0.55: parts.append("Mr. Smith met Dr. J. Doe at No. 5 on Jan. 3. ")
        elif k < 0.65: parts.append("What? yes! \"Really.\" (Sure.) ")
        elif k < 0.7: parts.append("x" * rng.randrange(1, 3000) + " ")
        elif k < 0.75: parts.append("  \n \t\n" + " " * rng.randrange(0, 40))
        else: parts.append("The U.S. a.m. vs. cf. etc. and so on. Then it ended.\n")
    return ''.join(parts).encode()

texts = {'man': raw[:3_000_000], 'man_tail': raw[-1_000_000:], 'uni': unicodeify(raw[3_000_000:4_000_000]), 'list': listy(20000)}

def run(mod, data, sizes, flush_every, params):
    snap = mod.TextSnapshot(b"", 0)
    pieces, fronts = [], []
    i = k = 0
    while i < len(data):
        n = sizes[k % len(sizes)]; k += 1
        a = mod.TextAssembler(snapshot=snap, **params)
        fl = flush_every and k % flush_every == 0
        pieces += [(p.text, p.start_byte, p.end_byte, p.starts_segment, p.ends_segment, p.carry_chars, p.carry_bytes)
                   for p in a.feed(data[i:i + n], flush=fl)]
        snap = a.snapshot(); fronts.append((snap.tail, snap.offset, snap.segment_start)); i += n
    a = mod.TextAssembler(snapshot=snap, **params)
    pieces += [(p.text, p.start_byte, p.end_byte, p.starts_segment, p.ends_segment, p.carry_chars, p.carry_bytes) for p in a.close()]
    return pieces, fronts

bad = 0; t_old = t_new = 0.0
for name, data in texts.items():
    for sizes in ([2048], [37], [512, 3000, 7, 1100], [8191], [rng.randrange(1, 5000) for _ in range(50)]):
        for params in (dict(max_tail_bytes=4096, segment_by="sentence", max_segment_bytes=1024),
                       dict(max_tail_bytes=256, segment_by="sentence", max_segment_bytes=64)):
            for flush_every in (0, 13):
                if sizes == [37] and name == 'man': data_ = data[:300_000]
                else: data_ = data
                t0 = time.process_time(); old = run(OLD, data_, sizes, flush_every, params); t1 = time.process_time()
                new = run(NEW, data_, sizes, flush_every, params); t2 = time.process_time()
                t_old += t1 - t0; t_new += t2 - t1
                if old != new:
                    bad += 1
                    po, pn = old[0], new[0]
                    j = next((j for j in range(min(len(po), len(pn))) if po[j] != pn[j]), min(len(po), len(pn)))
                    print("DIFF", name, sizes[:4], params['max_segment_bytes'], flush_every, "at piece", j,
                          po[j:j+1], pn[j:j+1], "fronts equal", old[1] == new[1])
print("differences:", bad, f"old {t_old:.2f}s new {t_new:.2f}s")
