"""Issue 14, item 4: storage is never touched with the engine lock held for long. A spill hands its record
to the durable writer (the step goes on while the disk is slow), a stream used again before its record is
written comes back from memory, a failed eviction loses nothing, and a cold load's read runs before the lock."""

import threading

import pytest
import torch

from streamret.engine import Engine, EngineConfig
from streamret.engine.durability import DurableStore
from streamret.errors import DurableWriteFailed
from streamret.model.spec import load_model

WAIT_S = 60  # far above a step on this CPU; only a step stuck behind storage runs into it


class GatedStore(DurableStore):
    """A durable store whose writes (or the reads of one id) wait until the test opens the gate."""

    def __init__(self, url: str, gate_writes: bool = False, gate_read_of: str | None = None,
                 fail_writes: bool = False):
        super().__init__(url)
        self.gate = threading.Event()
        self.gate_writes, self.gate_read_of, self.fail_writes = gate_writes, gate_read_of, fail_writes
        self.waiting = threading.Event()  # set once a gated call is waiting

    def write(self, stream_id: str, revision: int, data: bytes) -> bool:
        if self.fail_writes:
            raise DurableWriteFailed(f"test store refuses the record of {stream_id!r}")
        if self.gate_writes:
            self.waiting.set()
            assert self.gate.wait(WAIT_S), "the test never opened the gate"
        return super().write(stream_id, revision, data)

    def read(self, stream_id: str) -> bytes | None:
        if stream_id == self.gate_read_of:
            self.waiting.set()
            assert self.gate.wait(WAIT_S), "the test never opened the gate"
        return super().read(stream_id)


def small_engine(store: DurableStore) -> Engine:
    one = Engine.from_model("random:tiny", device="cpu").store.state_bytes
    cfg = EngineConfig(device_state_bytes=2 * one, host_state_bytes=2 * one, durable_every_chunks=0)
    return Engine(load_model("random:tiny", "cpu"), config=cfg, durable=store)


def text(i: int, seq: int) -> str:
    return f"stream {i} part {seq} reads on and on, " * (i + 2)


def states(eng: Engine, ids: list[str]) -> dict[str, dict[str, torch.Tensor]]:
    out = {}
    for sid in ids:
        with eng._lock:
            eng._resident(sid)
            out[sid] = {k: v.cpu().clone() for k, v in eng.store.read(sid).tensors().items()}
    return out


def reference(ids: list[str], seqs: int) -> dict[str, dict[str, torch.Tensor]]:
    with Engine.from_model("random:tiny", device="cpu") as eng:  # everything resident: no spills
        for seq in range(1, seqs + 1):
            for i, sid in enumerate(ids):
                eng.append(sid, seq, text(i, seq), flush=True)
        return states(eng, ids)


def assert_same(got: dict, want: dict) -> None:
    assert got.keys() == want.keys()
    for sid in want:
        for k in want[sid]:
            assert torch.equal(got[sid][k], want[sid][k]), (sid, k)


def test_spills_go_on_while_the_disk_is_stuck_and_a_leaving_stream_comes_back(tmp_path):
    store = GatedStore(str(tmp_path / "s"), gate_writes=True)
    ids = [f"s{i}" for i in range(6)]
    with small_engine(store) as eng:
        for i, sid in enumerate(ids):  # 6 streams, 4 rows in memory: spills, whose writes all wait
            eng.submit_append(sid, 1, text(i, 1), flush=True).result(timeout=WAIT_S)
        assert store.waiting.is_set() and eng.stats()["streams"]["durable"] == 2
        assert len(eng.store.leaving) == 2  # not written yet, and no step waited for them
        for i, sid in enumerate(ids):  # the leaving ones come back from memory, others leave in turn
            eng.submit_append(sid, 2, text(i, 2), flush=True).result(timeout=WAIT_S)
        store.gate.set()
        eng.durability.drain()
        assert_same(states(eng, ids), reference(ids, 2))


def test_a_failed_eviction_keeps_the_stream_in_memory(tmp_path):
    store = GatedStore(str(tmp_path / "s"), fail_writes=True)
    ids = [f"s{i}" for i in range(6)]
    with small_engine(store) as eng:
        for i, sid in enumerate(ids):
            eng.append(sid, 1, text(i, 1), flush=True)
        eng.durability.drain()
        assert not eng.store.leaving and set(eng.store.streams) == set(ids)  # all back, over the host budget
        with pytest.raises(DurableWriteFailed):
            eng.evict("s0")
        with pytest.raises(DurableWriteFailed):
            eng.close("s1", keep_state=True)
        assert "s0" in eng.store.streams
        for i, sid in enumerate(ids):
            if sid != "s1":
                eng.append(sid, 2, text(i, 2), flush=True)
        kept = [sid for sid in ids if sid != "s1"]
        store.fail_writes = False
        assert_same(states(eng, kept), {k: v for k, v in reference(ids, 2).items() if k in kept})


def test_a_cold_load_reads_storage_without_the_lock(tmp_path):
    with Engine.from_model("random:tiny", device="cpu", state_dir=str(tmp_path / "s")) as eng:
        eng.append("cold", 1, text(0, 1), flush=True)
        want = states(eng, ["cold"])
        eng.evict("cold")
    store = GatedStore(str(tmp_path / "s"), gate_read_of="cold")
    with Engine(load_model("random:tiny", "cpu"), durable=store) as eng:
        opened = {}
        opener = threading.Thread(target=lambda: opened.update(info=eng.open("cold")), daemon=True)
        opener.start()
        assert store.waiting.wait(WAIT_S)
        # the opener is inside the store's read: the lock is free, so other streams go on
        eng.submit_append("warm", 1, text(1, 1), flush=True).result(timeout=WAIT_S)
        assert eng.info("warm").applied_seq == 1
        store.gate.set()
        opener.join(WAIT_S)
        assert opened["info"].applied_seq == 1
        assert_same(states(eng, ["cold"]), want)
