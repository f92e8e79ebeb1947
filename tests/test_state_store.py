"""State tiers: device -> host -> durable and back are lossless; the durable store is safe and atomic."""

import os

import pytest
import torch

from streamret.engine import Engine, EngineConfig
from streamret.engine.durability import DurableStore
from streamret.errors import InvalidArgument

BAD_IDS = ["../../escape", "/etc/passwd", "a/../../b", "..", ".", "x\x00y", "名前/../..", "C:\\win", "~", "a" * 1000]


def state_of(eng: Engine, sid: str) -> dict[str, torch.Tensor]:
    with eng._lock:  # the store is the engine's; read it the way the engine does
        eng._resident(sid)
        return {k: v.cpu() for k, v in eng.store.read(sid).tensors().items()}


def test_spill_to_host_and_durable_and_reload_are_bit_identical(tmp_path):
    one = Engine.from_model("random:tiny", device="cpu").store.state_bytes
    cfg = EngineConfig(device_state_bytes=2 * one, host_state_bytes=2 * one, durable_every_chunks=0)
    with Engine.from_model("random:tiny", device="cpu", state_dir=str(tmp_path), config=cfg) as eng:
        ids = [f"s{i}" for i in range(6)]
        before = {}
        for i, sid in enumerate(ids):
            eng.append(sid, 1, f"stream {i} says hello world, " * (i + 1), flush=True)
            before[sid] = state_of(eng, sid)
            before[sid + "/segments"] = [s.text for s in eng.segments(sid)]
        tiers = [eng.store.tier(sid) for sid in ids]
        assert tiers.count("device") == 2 and tiers.count("host") == 2 and tiers.count("durable") == 2
        assert eng.stats()["streams"] == {"device": 2, "host": 2, "durable": 2}
        for sid in reversed(ids):  # reloads move others down the tiers again
            after = state_of(eng, sid)
            assert after.keys() == before[sid].keys()
            for k in after:
                assert torch.equal(after[k], before[sid][k]), (sid, k)
            assert [s.text for s in eng.segments(sid)] == before[sid + "/segments"]


def test_durable_store_never_writes_outside_its_folder(tmp_path):
    root = tmp_path / "store"
    store = DurableStore(str(root))
    for i, sid in enumerate(BAD_IDS):
        store.write(sid, 1, b"x%d" % i)
    for i, sid in enumerate(BAD_IDS):
        assert store.read(sid) == b"x%d" % i
        assert os.path.realpath(store.path(sid)).startswith(str(root.resolve()) + os.sep)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["store"]
    files = [f for _, _, fs in os.walk(root) for f in fs]
    assert len(files) == len(BAD_IDS) and all(f.endswith(".safetensors") for f in files)


def test_engine_with_bad_ids_stays_inside_state_dir(tmp_path):
    state_dir = tmp_path / "state"
    with Engine.from_model("random:tiny", device="cpu", state_dir=str(state_dir)) as eng:
        for sid in BAD_IDS:
            eng.append(sid, 1, "some text ")
            eng.evict(sid)
            assert eng.info(sid).applied_seq == 1  # reloads by the same id
        for bad in ["", None, 7, "x" * 5000, "\udc80"]:
            with pytest.raises(InvalidArgument):
                eng.open(bad)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state"]


def test_older_revision_never_replaces_a_newer_one(tmp_path):
    store = DurableStore(str(tmp_path))
    assert store.write("s", 5, b"new")
    assert not store.write("s", 4, b"old")
    assert store.read("s") == b"new"
    assert not [f for _, _, fs in os.walk(tmp_path) for f in fs if f.endswith(".tmp")]  # no temp file left
    store.delete("s")
    assert store.read("s") is None and not store.exists("s")
    assert store.write("s", 1, b"again")  # a deleted id starts over


def test_fsspec_url_store_round_trips_an_engine_stream():
    url = "memory://streamret-test-store"
    cfg = EngineConfig(durable_every_chunks=1)
    with Engine.from_model("random:tiny", device="cpu", state_dir=url, config=cfg) as eng:
        ack = eng.append("doc", 1, "a stream kept in an fsspec store. ", flush=True)
        assert ack.durable_seq == 1
        emb = eng.embedding("doc")
    with Engine.from_model("random:tiny", device="cpu", state_dir=url, config=cfg) as eng:
        assert eng.info("doc").applied_seq == 1
        assert torch.equal(torch.from_numpy(eng.embedding("doc")), torch.from_numpy(emb))


def test_a_gather_holds_its_rows_until_the_gather_after_the_next_and_a_write_puts_rows_back():
    """On the CPU a step's states are gathered into reused buffers: each gather reads what `read` reads, and
    stays so while the loop may still use it: the next step's gather does not overwrite it."""
    from streamret.engine.state_store import DeviceSlab
    from streamret.model.spec import load_model

    model = load_model("random:tiny", "cpu").model
    slab = DeviceSlab(model, 16)
    for i in range(12):
        state = model.init_state(1)
        for t in state.tensors().values():
            t.copy_(torch.full_like(t, i))
        slab.put(f"s{i}", state)
    row_sets = [[0, 3, 5], [1, 2], [7, 6, 5, 4, 3, 11, 10], [9], [2, 8, 0]]
    gathered, indices = [], []
    for k, rows in enumerate(row_sets):
        state, idx = slab.gather(rows)
        assert idx.tolist() == rows  # the rows' indices, for the write that puts the step back
        gathered.append(state)
        indices.append(idx)
        for rs, got in list(zip(row_sets, gathered))[max(0, k - 1):]:
            want = slab.read(rs)
            for name, t in got.tensors().items():
                assert torch.equal(t, want.tensors()[name]), (k, rs, name)
    # a step's new states written back land in their rows and nowhere else (with the gather's indices, as a
    # step's scatter writes, or uploaded again)
    for k, idx in ((-1, indices[-1]), (-2, None)):
        before = slab.read(list(range(12)))
        new = gathered[k].map(lambda t: t + 100)
        slab.write(row_sets[k], new, idx)
        after = slab.read(list(range(12)))
        for name, t in after.tensors().items():
            expected = before.tensors()[name].clone()
            expected[row_sets[k]] = new.tensors()[name]
            assert torch.equal(t, expected), (k, name)


def test_a_new_stream_takes_a_freed_row_zeroed_and_the_others_keep_theirs():
    """put_new takes a row with no device work (it reads as the zero row until written) and drop frees one
    unread: a new stream in a row freed by a closed one starts from the model's initial state, and no other row
    changes."""
    from streamret.engine.state_store import DeviceSlab
    from streamret.model.spec import load_model

    model = load_model("random:tiny", "cpu").model
    slab = DeviceSlab(model, 4)
    for i in range(4):
        state = model.init_state(1)
        for t in state.tensors().values():
            t.copy_(torch.full_like(t, i + 1))
        slab.put(f"s{i}", state)
    before = slab.read([0, 1, 2, 3])
    row = slab.row_of("s2")
    slab.drop("s2")
    assert "s2" not in slab and slab.full is False
    slab.put_new("fresh")
    assert slab.row_of("fresh") == row and slab.full
    initial = model.init_state(1)
    fresh = slab.read([row])
    for name, t in fresh.tensors().items():
        assert torch.equal(t, initial.tensors()[name].to(t.dtype)), name
    after = slab.read([0, 1, 2, 3])
    for name, t in after.tensors().items():
        others = [r for r in range(4) if r != row]
        assert torch.equal(t[others], before.tensors()[name][others]), name


def test_streams_closed_and_opened_again_start_from_nothing():
    with Engine.from_model("random:tiny", device="cpu") as eng:
        eng.open("first")
        first, fresh = state_of(eng, "first"), eng.embedding("first")
        for round_ in range(3):  # rows are freed and taken again
            for i in range(20):
                eng.append(f"s{i}", 1, f"round {round_} text {i} " * 20)
            for i in range(20):
                eng.close(f"s{i}")
        eng.open("again")
        again = state_of(eng, "again")
        assert eng.info("again").tokens == 0
        assert all(torch.equal(again[k], first[k]) for k in first)
        assert (eng.embedding("again") == fresh).all()


def test_new_streams_rows_read_as_zeros_until_written_through_gathers_takes_and_growth():
    """A new stream's row keeps the closed stream's numbers until its first write, but every read of it (read,
    gather beside written rows, take) gives zeros, a step's write puts its own state there, and the slab's growth
    keeps both kinds of rows as they read."""
    from streamret.engine.state_store import DeviceSlab
    from streamret.model.spec import load_model

    model = load_model("random:tiny", "cpu").model
    slab = DeviceSlab(model, 64)

    def filled(value: float):
        state = model.init_state(1)
        for t in state.tensors().values():
            t.copy_(torch.full_like(t, value))
        return state

    def assert_rows(got, values: list[float]) -> None:
        for name, t in got.tensors().items():
            for k, v in enumerate(values):
                assert torch.equal(t[k], torch.full_like(t[k], v)), (name, k, v)

    for i in range(16):
        slab.put(f"s{i}", filled(i + 1))
    for i in (3, 9):
        slab.drop(f"s{i}")
    slab.put_new("new3")
    slab.put_new("new9")
    rows = [slab.row_of(s) for s in ("s1", "new3", "s2", "new9")]
    assert sorted(rows[1::2]) == [3, 9]  # the freed rows, their old numbers still there
    assert_rows(slab.read(rows), [2, 0, 3, 0])
    state, idx = slab.gather(rows)
    assert idx.tolist() == rows  # a step writes back to the streams' own rows
    assert_rows(state, [2, 0, 3, 0])
    slab.write(rows[1:2], filled(7.0), idx[1:2])  # new3's first step
    assert_rows(slab.read(rows), [2, 7, 3, 0])
    slab.put_new("grow")  # the slab is full (16 rows): it grows, and rows read as before
    assert slab.n == 32 and slab.row_of("grow") == 16
    assert_rows(slab.read([slab.row_of(s) for s in ("s0", "new3", "new9", "grow", "s15")]), [1, 7, 0, 0, 16])
    left = slab.row_of("new9")
    assert_rows(slab.take("new9"), [0])
    slab.put("back", filled(5.0))  # takes the row new9 left, written: its own numbers
    assert slab.row_of("back") == left
    assert_rows(slab.read([left, slab.row_of("grow")]), [5, 0])
