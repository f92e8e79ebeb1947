"""The engine on a CUDA GPU: the pipelined step loop, Triton kernels and device-resident states."""

import numpy as np
import pytest
import torch

from streamret.engine import Engine, EngineConfig

pytestmark = pytest.mark.gpu


def rel_err(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


@pytest.mark.parametrize("cuda_graphs", [True, False])
def test_interleaved_streams_on_gpu_equal_one_shot_runs(cuda_graphs):
    rng = np.random.default_rng(0)
    words = ["alpha", "beta.", "gamma", "délta!", "€psilon", "\n"]
    texts = {f"g{i}": " ".join(rng.choice(words, size=int(rng.integers(20, 200)))) for i in range(48)}
    # many steps, so that two are in flight most of the time (and, with graphs, several shape buckets)
    cfg = EngineConfig(max_step_tokens=512, cuda_graphs=cuda_graphs)
    with Engine.from_model("random:tiny", device="cuda", dtype="float32", config=cfg) as eng:
        futures = []
        for rnd in range(4):
            for sid, text in texts.items():
                raw = text.encode()
                part = raw[rnd * len(raw) // 4 : (rnd + 1) * len(raw) // 4]
                futures.append(eng.submit_append(sid, rnd + 1, part, flush=rnd == 3))
        for f in futures:
            f.result(timeout=120)
        assert eng.stats()["steps"] > 4
        assert (eng.stats()["cuda_graph_captures"] > 0) == cuda_graphs
        for sid, text in texts.items():
            ids = torch.tensor(list(text.encode()), device="cuda")
            with torch.no_grad():
                _, state = eng.model(ids)
            ref = eng.model.stream_embedding(state)[0].cpu().numpy()
            assert rel_err(eng.embedding(sid), ref) <= 1e-4


def test_the_step_budget_on_a_gpu_is_the_gpus():
    with Engine.from_model("random:tiny", device="cuda") as eng:
        assert eng.config.max_step_tokens == eng.scheduler.max_step_tokens == 32768
        assert eng.config.overlap_steps == "queued"


def test_spill_from_gpu_and_back_is_bit_identical(tmp_path):
    one = Engine.from_model("random:tiny", device="cpu").store.state_bytes
    cfg = EngineConfig(device_state_bytes=2 * one, host_state_bytes=2 * one, durable_every_chunks=0)
    with Engine.from_model("random:tiny", device="cuda", state_dir=str(tmp_path), config=cfg) as eng:
        before = {}
        for i in range(6):
            eng.append(f"s{i}", 1, f"stream {i} on the gpu " * (i + 1), flush=True)
            before[f"s{i}"] = eng.export_state(f"s{i}")
        assert eng.stats()["streams"] == {"device": 2, "host": 2, "durable": 2}
        for sid, data in reversed(before.items()):
            assert eng.export_state(sid) == data


def test_streams_opened_in_rows_freed_by_closed_ones_start_from_zeros_on_gpu():
    """A new stream's row is not zeroed where it lies but read from the slab's zero row until written
    (state_store.DeviceSlab.put_new): in rows that closed streams left, on the GPU with step graphs, new streams read
    as the model's initial state, and after their steps (some sharing a step with older streams) each embedding is a
    one-shot run's."""
    rng = np.random.default_rng(1)
    words = ["alpha", "beta.", "gamma", "délta!", "\n"]
    cfg = EngineConfig(max_step_tokens=512)
    with Engine.from_model("random:tiny", device="cuda", dtype="float32", config=cfg) as eng:
        fresh = {k: v.cpu() for k, v in eng.model.init_state(1).tensors().items()}
        for rnd in range(3):
            texts = {f"r{rnd}s{i}": " ".join(rng.choice(words, size=int(rng.integers(20, 120)))) for i in range(24)}
            futures = [eng.submit_append(sid, 1, text.encode(), flush=True) for sid, text in texts.items()]
            eng.open(f"idle{rnd}")  # opened, never stepped: its row holds a closed stream's numbers
            with eng._lock:
                got = {k: v.cpu() for k, v in eng.store.read(f"idle{rnd}").tensors().items()}
            assert all(torch.equal(got[k], fresh[k].to(got[k].dtype)) for k in fresh)
            for f in futures:
                f.result(timeout=120)
            for sid, text in texts.items():
                ids = torch.tensor(list(text.encode()), device="cuda")
                with torch.no_grad():
                    _, state = eng.model(ids)
                assert rel_err(eng.embedding(sid), eng.model.stream_embedding(state)[0].cpu().numpy()) <= 1e-4
            for sid in texts:
                eng.close(sid)
        assert eng.stats()["cuda_graph_captures"] > 0
