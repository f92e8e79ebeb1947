"""torchscale conversion: a synthetic torchscale-layout state dict, run by a direct implementation of
torchscale's recurrent equations written here, gives the hidden states of our converted model."""

import math

import pytest
import torch
import torch.nn.functional as F

from streamret.model.checkpoint import CheckpointError, model_from_state_dict
from streamret.model.torchscale import convert_torchscale_state_dict

D, H, VDIM, FFN, LAYERS, VOCAB = 32, 4, 48, 40, 2, 50  # head k dim 8, head v dim 12


def torchscale_state_dict(seed=0, prefix="decoder.", tied=False, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)

    def w(*shape, std=None):
        return torch.randn(*shape, generator=g) * (std if std is not None else shape[-1] ** -0.5)

    def norm_w(n):
        return 1 + 0.2 * torch.randn(n, generator=g)

    sd = {"embed_tokens.weight": w(VOCAB, D, std=0.2), "layer_norm.weight": norm_w(D)}
    sd["output_projection.weight"] = sd["embed_tokens.weight"] if tied else w(VOCAB, D)
    K = D // H
    sd["retnet_rel_pos.angle"] = (1.0 / 10000 ** torch.linspace(0, 1, K // 2)).repeat_interleave(2)
    sd["retnet_rel_pos.decay"] = torch.log(1 - 2 ** (-5 - torch.arange(H, dtype=torch.float)))
    for i in range(LAYERS):
        p = f"layers.{i}."
        sd[p + "retention_layer_norm.weight"] = norm_w(D)
        for name, rows in (("q", D), ("k", D), ("v", VDIM), ("g", VDIM)):
            sd[p + f"retention.{name}_proj.weight"] = w(rows, D)
        sd[p + "retention.out_proj.weight"] = w(D, VDIM)
        sd[p + "final_layer_norm.weight"] = norm_w(D)
        sd[p + "ffn.fc1.weight"] = w(FFN, D)
        sd[p + "ffn.gate.weight"] = w(FFN, D)
        sd[p + "ffn.fc2.weight"] = w(D, FFN)
    return {prefix + k: v.to(dtype) for k, v in sd.items()}


def rms_norm(x, weight, eps):
    out = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)
    return out if weight is None else out * weight


def rotate_every_two(x):
    return torch.stack((-x[..., 1::2], x[..., ::2]), dim=-1).flatten(-2)


def torchscale_recurrent(sd, ids, *, eps, scale_embedding=True, prefix="decoder."):
    """torchscale's RetNetDecoder, one token at a time (its incremental_state path), batch of 1."""
    sd = {k.removeprefix(prefix): v.double() for k, v in sd.items()}
    K, V = D // H, VDIM // H
    angle, decay = sd["retnet_rel_pos.angle"], sd["retnet_rel_pos.decay"].exp()
    state = [{} for _ in range(LAYERS)]
    outs = []
    for t, tok in enumerate(ids.tolist()):
        x = sd["embed_tokens.weight"][tok] * (math.sqrt(D) if scale_embedding else 1.0)
        sin, cos = torch.sin(angle * t), torch.cos(angle * t)
        for i in range(LAYERS):
            p, st = f"layers.{i}.", state[i]
            h = rms_norm(x, sd[p + "retention_layer_norm.weight"], eps)
            q = (sd[p + "retention.q_proj.weight"] @ h).view(H, K)
            k = (sd[p + "retention.k_proj.weight"] @ h).view(H, K) * K**-0.5
            v = (sd[p + "retention.v_proj.weight"] @ h).view(H, V)
            gate = sd[p + "retention.g_proj.weight"] @ h
            qr, kr = q * cos + rotate_every_two(q) * sin, k * cos + rotate_every_two(k) * sin
            kv = v[:, :, None] * kr[:, None, :]  # [H, V, K]
            if "kv" in st:
                scale = st["scale"] * decay + 1
                kv = st["kv"] * (st["scale"].sqrt() * decay / scale.sqrt())[:, None, None] + kv / scale.sqrt()[
                    :, None, None]
            else:
                scale = torch.ones_like(decay)
            st["kv"], st["scale"] = kv, scale
            o = (qr[:, None, :] * kv).sum(-1)  # [H, V]
            o = rms_norm(o, None, eps).reshape(H * V)
            x = x + sd[p + "retention.out_proj.weight"] @ (F.silu(gate) * o)
            h = rms_norm(x, sd[p + "final_layer_norm.weight"], eps)
            ff = F.silu(sd[p + "ffn.fc1.weight"] @ h) * (sd[p + "ffn.gate.weight"] @ h)
            x = x + sd[p + "ffn.fc2.weight"] @ ff
        outs.append(rms_norm(x, sd["layer_norm.weight"], eps))
    return torch.stack(outs)


@pytest.mark.parametrize("mode", ["recurrent", "chunkwise", "parallel"])
def test_converted_model_matches_torchscale_recurrence(mode):
    sd = torchscale_state_dict()
    ids = torch.randint(0, VOCAB, (37,), generator=torch.Generator().manual_seed(1))
    eps = 1e-10  # torchscale's per-row scalars cancel in the per-head RMSNorm up to eps (see module doc)
    config, tensors = convert_torchscale_state_dict(sd, layernorm_eps=eps)
    assert (config.n_heads, config.head_k_dim, config.head_v_dim, config.ffn_dim) == (H, D // H, VDIM // H, FFN)
    assert config.rope_freqs == "torchscale" and config.decays is None and config.lm_head
    model = model_from_state_dict(config, tensors)
    with torch.no_grad():
        ours, _ = model(ids, mode=mode, chunk_size=8)
    want = torchscale_recurrent(sd, ids, eps=eps).float()
    rel = ((ours - want).norm() / want.norm()).item()
    assert rel < 2e-6, rel
    with torch.no_grad():
        logits = model.logits(ours)
    assert torch.allclose(logits, want @ sd["decoder.output_projection.weight"].T, atol=1e-4, rtol=1e-4)


def test_default_eps_differs_only_by_eps():
    """With torchscale's default eps 1e-6 the per-row rescaling no longer cancels exactly, but nearly."""
    sd = torchscale_state_dict(seed=3)
    ids = torch.randint(0, VOCAB, (30,), generator=torch.Generator().manual_seed(2))
    config, tensors = convert_torchscale_state_dict(sd)
    assert config.norm_eps == 1e-6
    with torch.no_grad():
        ours, _ = model_from_state_dict(config, tensors)(ids, mode="recurrent")
    want = torchscale_recurrent(sd, ids, eps=1e-6).float()
    assert ((ours - want).norm() / want.norm()).item() < 1e-4


def test_prefix_tied_head_unscaled_embedding_and_custom_decays():
    sd = torchscale_state_dict(seed=4, prefix="model.decoder.", tied=True)
    custom = torch.tensor([0.9, 0.95, 0.99, 0.999])
    sd["model.decoder.retnet_rel_pos.decay"] = custom.log()
    config, tensors = convert_torchscale_state_dict(sd, no_scale_embedding=True, layernorm_eps=1e-10)
    assert config.tie_embeddings and "lm_head.weight" not in tensors
    assert config.decays == pytest.approx(custom.tolist(), rel=1e-6)
    model = model_from_state_dict(config, tensors)
    assert model.lm_head.weight is model.embeddings.weight
    # a scaled embedding cannot stay tied to the unscaled output projection
    config2, tensors2 = convert_torchscale_state_dict(sd, no_scale_embedding=False)
    assert not config2.tie_embeddings and "lm_head.weight" in tensors2


def test_head_count_from_argument_when_buffers_are_absent():
    sd = {k: v for k, v in torchscale_state_dict().items() if "retnet_rel_pos" not in k}
    with pytest.raises(CheckpointError, match="decoder_retention_heads"):
        convert_torchscale_state_dict(sd)
    config, _ = convert_torchscale_state_dict(sd, decoder_retention_heads=H)
    assert config.n_heads == H


@pytest.mark.parametrize(
    "extra, kwargs, match",
    [
        ({"decoder.layers.0.retention_layer_norm.bias": torch.zeros(D)}, {}, "LayerNorm"),
        ({"decoder.layernorm_embedding.weight": torch.ones(D)}, {}, "layernorm_embedding"),
        ({"decoder.layers.0.ffn.ffn_layernorm.weight": torch.ones(FFN)}, {}, "subln"),
        ({"decoder.layers.1.moe_layer.gate.wg.weight": torch.ones(2, D)}, {}, "MoE"),
        ({}, {"deepnorm": True}, "deepnorm"),
        ({}, {"decoder_normalize_before": False}, "post-norm"),
        ({}, {"activation_fn": "gelu"}, "swish"),
        ({}, {"xpos_rel_pos": True}, "xpos"),
        ({"decoder.layers.0.retention.extra.weight": torch.ones(1)}, {}, "retention.extra.weight"),
    ],
)
def test_unsupported_variants_are_refused(extra, kwargs, match):
    sd = {**torchscale_state_dict(), **extra}
    with pytest.raises(CheckpointError, match=match):
        convert_torchscale_state_dict(sd, **kwargs)


def test_other_rotary_angles_are_refused():
    sd = torchscale_state_dict()
    sd["decoder.retnet_rel_pos.angle"] = sd["decoder.retnet_rel_pos.angle"] * 2
    with pytest.raises(CheckpointError, match="angle"):
        convert_torchscale_state_dict(sd)
