"""Parallel, chunkwise and recurrent forms compute the same function (CPU, float32)."""

import pytest
import torch

from streamret.model import RetNet, RetNetConfig, build_random

CONFIGS = {
    "tiny": RetNetConfig(),
    "one-head": RetNetConfig(n_heads=1, head_k_dim=8, head_v_dim=8, d_model=32, ffn_dim=64),
    "k-gt-v": RetNetConfig(n_heads=3, head_k_dim=24, head_v_dim=10, d_model=48, n_layers=3, ffn_dim=96),
    "custom-decay": RetNetConfig(decays=(0.5, 0.999), embed_dim=24),
}


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).norm() / b.double().norm().clamp(min=1e-30))


def model_for(name: str) -> RetNet:
    return build_random(CONFIGS[name], seed=1).eval()


@pytest.mark.parametrize("name", list(CONFIGS))
@pytest.mark.parametrize("chunk_size", [1, 7, 64, 1000])
def test_three_forms_agree(name: str, chunk_size: int) -> None:
    torch.manual_seed(0)
    m = model_for(name)
    lens = [1, 37, 130]
    ids = torch.randint(0, m.config.vocab_size, (sum(lens),))
    cu = torch.tensor([0, 1, 38, 168])
    state = m.init_state(3)
    for s in state.layers:
        s.normal_()
    state.positions[:] = torch.tensor([5, 0, 1000])
    with torch.no_grad():
        hp, sp = m(ids, mode="parallel", state=state, cu_seqlens=cu)
        hc, sc = m(ids, mode="chunkwise", state=state, cu_seqlens=cu, chunk_size=chunk_size)
        hr, sr = m(ids, mode="recurrent", state=state, cu_seqlens=cu)
    for h in (hc, hr):
        assert rel_err(h, hp) <= 1e-5
    for s in (sc, sr):
        for a, b in zip(s.layers, sp.layers):
            assert rel_err(a, b) <= 1e-5
        assert torch.equal(s.positions, sp.positions)
        assert rel_err(m.stream_embedding(s), m.stream_embedding(sp)) <= 1e-5


@pytest.mark.parametrize("name", list(CONFIGS))
def test_packed_batch_equals_separate_runs(name: str) -> None:
    torch.manual_seed(1)
    m = model_for(name)
    lens = [3, 70, 1, 20]
    seqs = [torch.randint(0, m.config.vocab_size, (n,)) for n in lens]
    cu = torch.tensor([0, *torch.tensor(lens).cumsum(0).tolist()])
    with torch.no_grad():
        packed, ps = m(torch.cat(seqs), cu_seqlens=cu, chunk_size=16)
        for i, s in enumerate(seqs):
            h, st = m(s, chunk_size=16)
            assert rel_err(packed[cu[i] : cu[i + 1]], h) <= 1e-5
            for a, b in zip(ps.layers, st.layers):
                assert rel_err(a[i : i + 1], b) <= 1e-5
            assert rel_err(m.stream_embedding(ps)[i], m.stream_embedding(st)[0]) <= 1e-5


@pytest.mark.parametrize("mode", ["parallel", "chunkwise", "recurrent"])
def test_split_with_state_equals_one_pass(mode: str) -> None:
    torch.manual_seed(2)
    m = model_for("k-gt-v")
    ids = torch.randint(0, m.config.vocab_size, (97,))
    with torch.no_grad():
        full, fs = m(ids, mode=mode, chunk_size=8)
        for cut in (1, 8, 50, 96):
            a, st = m(ids[:cut], mode=mode, chunk_size=8)
            b, st = m(ids[cut:], mode=mode, state=st, chunk_size=8)
            assert rel_err(torch.cat([a, b]), full) <= 1e-5
            assert rel_err(m.stream_embedding(st), m.stream_embedding(fs)) <= 1e-5


def test_position_1e9_equals_position_0() -> None:
    torch.manual_seed(3)
    m = model_for("tiny")
    ids = torch.randint(0, m.config.vocab_size, (200,))
    with torch.no_grad():
        h0, _ = m(ids)
        h9, s9 = m(ids, positions=torch.tensor([10**9]))
    assert rel_err(h9, h0) <= 1e-4
    assert int(s9.positions[0]) == 10**9 + 200


def test_batched_input_matches_packed() -> None:
    m = model_for("tiny")
    ids = torch.randint(0, m.config.vocab_size, (3, 11))
    with torch.no_grad():
        hb, _ = m(ids)
        hp, _ = m(ids.reshape(-1), cu_seqlens=torch.tensor([0, 11, 22, 33]))
    assert torch.allclose(hb.reshape(33, -1), hp, atol=1e-6)


def test_bad_input_is_named() -> None:
    m = model_for("tiny")
    with pytest.raises(ValueError, match="mode"):
        m(torch.tensor([1, 2]), mode="fast")
    with pytest.raises(ValueError, match="token ids"):
        m(torch.tensor([1, 10_000]))
    with pytest.raises(ValueError, match="cu_seqlens"):
        m(torch.tensor([1, 2, 3]), cu_seqlens=torch.tensor([0, 2]))
    with pytest.raises(ValueError, match="state holds"):
        m(torch.tensor([1, 2]), state=m.init_state(2))


def test_the_fused_layout_under_autocast_without_autograd():
    """The fused layers add their residuals in place only outside autocast, which does not cast an in-place
    op's operands (the distiller evaluates a float32 model under bf16 autocast with no gradients)."""
    from streamret.model.retnet import RetNetConfig, build_random

    cfg = RetNetConfig(n_heads=2, head_k_dim=16, head_v_dim=32, d_model=64, ffn_dim=96, n_layers=2)
    model = build_random(cfg, seed=7)
    ids = torch.randint(0, cfg.vocab_size, (40,), generator=torch.Generator().manual_seed(1))
    cu = torch.tensor([0, 20, 40])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        with torch.no_grad():
            out, _ = model(ids, cu_seqlens=cu, mode="parallel", fused=True)
        ref, _ = model(ids, cu_seqlens=cu, mode="parallel", fused=True)
    assert torch.allclose(out.float(), ref.float().detach(), atol=1e-6, rtol=0)
