"""Session 57 (workplace VM): writing 640 rows of 384 float32 (and their penalties and byte spans) into a kept pool's
arrays of 128 slots x 64 places with (slot, place) index pairs, against one flat index into views with the two axes as
one, and the per-row text loop of segments._place beside them; us a call, mean of 300.

    python3 bench/results/2026-12-07-s57/flat_index_micro.py
"""
import numpy as np, time
cap, m, d = 128, 64, 384
E = np.zeros((cap, m, d), np.float32); P = np.zeros((cap, m)); B = np.zeros((cap, m, 2), np.int64)
texts = [f"text {i}" for i in range(640)]
emb = np.random.rand(640, d).astype(np.float32); pen = np.random.rand(640); bs = np.zeros((640, 2), np.int64)
slots = np.repeat(np.arange(100), 6)[:640]; slots = np.concatenate([slots, np.full(640-len(slots), 100)])
places = np.tile(np.arange(6), 107)[:640] + 10
rows = np.arange(640)
def tm(f, n=300):
    t = time.perf_counter()
    for _ in range(n): f()
    return 1e6 * (time.perf_counter() - t) / n
def arrays():
    E[slots, places] = emb[rows]; P[slots, places] = pen[rows]; B[slots, places] = bs[rows]
def arrays_flat():
    flat = slots * m + places
    E.reshape(-1, d)[flat] = emb[rows]; P.reshape(-1)[flat] = pen[rows]; B.reshape(-1, 2)[flat] = bs[rows]
kept = [[None] * 20 for _ in range(cap)]
def loop():
    for slot, place, row in zip(slots.tolist(), places.tolist(), rows.tolist()):
        held = kept[slot]
        if place < len(held): held[place] = texts[row]
        else: held.append(texts[row])
print("arrays", tm(arrays), "arrays_flat", tm(arrays_flat), "loop", tm(loop))
print("E[slots,places] only", tm(lambda: E.__setitem__((slots, places), emb[rows])))
print("emb[rows]", tm(lambda: emb[rows]))
