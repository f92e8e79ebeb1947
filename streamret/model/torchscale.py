"""Convert a torchscale RetNet state dict (microsoft/torchscale, `architecture/retnet.py`) to ours.

torchscale checkpoints are pickled fairseq files: load the state dict yourself where you trust the
file (`torch.load(path, weights_only=True)["model"]`), or from a safetensors export, then

    config, tensors = convert_torchscale_state_dict(state_dict)
    model = model_from_state_dict(config, tensors)          # streamret.model.checkpoint

Key mapping (an optional prefix such as "decoder." or "model.decoder." is dropped):

    embed_tokens.weight                    -> embeddings.weight (times sqrt(d) unless no_scale_embedding)
    layers.{i}.retention_layer_norm.weight -> layers.{i}.attn_norm.weight
    layers.{i}.retention.{q,k}_proj.weight -> layers.{i}.attn.{q,k}_proj.weight, rows permuted (rotary below)
    layers.{i}.retention.{v,g}_proj.weight -> layers.{i}.attn.{v,g}_proj.weight
    layers.{i}.retention.out_proj.weight   -> layers.{i}.attn.o_proj.weight
    (group_norm has no weight)             -> layers.{i}.attn.g_norm.weight = 1
    layers.{i}.final_layer_norm.weight     -> layers.{i}.mlp_norm.weight
    layers.{i}.ffn.fc1.weight              -> layers.{i}.mlp.gate_proj.weight   (the one under swish)
    layers.{i}.ffn.gate.weight             -> layers.{i}.mlp.up_proj.weight
    layers.{i}.ffn.fc2.weight              -> layers.{i}.mlp.down_proj.weight
    layer_norm.weight                      -> norm.weight
    output_projection.weight               -> lm_head.weight (tied when it equals embed_tokens and no scale)
    retnet_rel_pos.{angle,decay}           -> checked against the formulas below (decays kept if they differ)

Dimensions: q/k span the model width, so head_k_dim = d / heads; values span decoder_value_embed_dim,
so head_v_dim = value_dim / heads (v_proj rows / heads); the FFN is a GLU of width
decoder_ffn_embed_dim (fc1 rows). The head count is not in the weights: it comes from the
retnet_rel_pos.decay buffer when present, else from `decoder_retention_heads`.

Rotary: torchscale rotates interleaved pairs (x[2i], x[2i+1]) ("rotate_every_two") with angle
theta_i = 10000^(-linspace(0, 1, K/2)[i]); we rotate half-split pairs (x[i], x[i + K/2]). Reordering
each head's q and k projection rows as [0, 2, 4, ..., K-2, 1, 3, ..., K-1] turns the first layout into
the second; applying the same permutation to q and k leaves every dot product q.k unchanged.
`RetNetConfig.rope_freqs = "torchscale"` gives the linspace frequencies (fla uses base^(-2i/K)).

Scaling: torchscale multiplies k by K^-0.5 before the rotation; we multiply q.k by the same K^-0.5
inside retention, which is the same product. torchscale also divides every output row of retention
by a per-row (per head, per position) positive scalar: sqrt of the decay mass in the parallel form,
a running decay sum in the recurrent form, max-abs sums in the chunkwise form. The per-head
RMSNorm that follows cancels any such scalar up to its eps: RMSNorm(c x) = RMSNorm(x) exactly when
eps = 0, and within about eps / mean(x^2) otherwise. So the converted model computes torchscale's
function, with identical parallel, chunkwise and recurrent forms (torchscale's own forms differ from
each other by the same eps-sized amounts).

Supported: the RMSNorm RetNet (pre-norm, swish GLU, fixed decays 1 - 2^(-5-h) or any per-head decays
in the buffer, optional sqrt(d) embedding scale, tied or untied output projection or none). Refused
with an error: LayerNorm variants (norms with a bias, from torchscale before its switch to RMSNorm),
post-norm (decoder_normalize_before=False) and deepnorm (residual scaling), subln (an FFN LayerNorm),
layernorm_embedding, xpos, multiway or MoE layers, activations other than swish.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

import torch

from .checkpoint import CheckpointError
from .retnet import RetNetConfig, rotary_inv_freq

_LAYER_KEYS = {
    "retention_layer_norm.weight": "attn_norm.weight",
    "retention.q_proj.weight": "attn.q_proj.weight",
    "retention.k_proj.weight": "attn.k_proj.weight",
    "retention.v_proj.weight": "attn.v_proj.weight",
    "retention.g_proj.weight": "attn.g_proj.weight",
    "retention.out_proj.weight": "attn.o_proj.weight",
    "retention.group_norm.weight": "attn.g_norm.weight",  # only if a variant gave it a weight
    "final_layer_norm.weight": "mlp_norm.weight",
    "ffn.fc1.weight": "mlp.gate_proj.weight",
    "ffn.gate.weight": "mlp.up_proj.weight",
    "ffn.fc2.weight": "mlp.down_proj.weight",
}
_TOP_KEYS = {"embed_tokens.weight", "layer_norm.weight", "output_projection.weight",
             "retnet_rel_pos.angle", "retnet_rel_pos.decay"}
_REFUSED = [
    (re.compile(r"norm\.bias$"), "LayerNorm with a bias (a pre-RMSNorm torchscale RetNet)"),
    (re.compile(r"layernorm_embedding"), "layernorm_embedding"),
    (re.compile(r"ffn_layernorm"), "subln (an FFN LayerNorm)"),
    (re.compile(r"moe_layer|experts"), "MoE layers"),
    (re.compile(r"\.[AB]\."), "multiway layers"),
    (re.compile(r"xpos"), "xpos"),
]


def convert_torchscale_state_dict(
    state_dict: Mapping[str, torch.Tensor],
    *,
    decoder_retention_heads: int | None = None,
    no_scale_embedding: bool = False,
    layernorm_eps: float = 1e-6,
    activation_fn: str = "swish",
    decoder_normalize_before: bool = True,
    deepnorm: bool = False,
    xpos_rel_pos: bool = False,
) -> tuple[RetNetConfig, dict[str, torch.Tensor]]:
    """torchscale RetNet weights -> (our config, our tensors). Keyword defaults are fairseq's retnet_base.

    The keywords are the torchscale/fairseq model args that the weights do not show; pass the values
    the checkpoint was trained with (fairseq keeps them in checkpoint["cfg"]["model"]).
    """
    if activation_fn != "swish":
        raise CheckpointError(f"activation_fn={activation_fn!r}: streamret's FFN is a swish GLU only")
    if not decoder_normalize_before or deepnorm:
        raise CheckpointError("post-norm / deepnorm torchscale RetNets are not supported; streamret is pre-norm")
    if xpos_rel_pos:
        raise CheckpointError("xpos_rel_pos=True is not supported; streamret uses plain rotary positions")
    sd = _strip_prefix(state_dict)
    for key in sd:
        for pattern, what in _REFUSED:
            if pattern.search(key):
                raise CheckpointError(f"torchscale checkpoint uses {what} (tensor {key!r}); streamret does not")

    emb = sd["embed_tokens.weight"]
    vocab, d = emb.shape
    n_layers = 1 + max((int(m.group(1)) for k in sd if (m := re.match(r"layers\.(\d+)\.", k))), default=-1)
    if n_layers == 0:
        raise CheckpointError("no 'layers.{i}.' tensors found: not a torchscale RetNet decoder state dict")
    heads = _num_heads(sd, decoder_retention_heads)
    if d % heads:
        raise CheckpointError(f"model width {d} is not divisible by {heads} retention heads")
    K = d // heads
    if K % 2:
        raise CheckpointError(f"head dim {K} is odd; rotary embeddings need an even one")
    v_rows = sd["layers.0.retention.v_proj.weight"].shape[0]
    if v_rows % heads:
        raise CheckpointError(f"value dim {v_rows} is not divisible by {heads} retention heads")
    V = v_rows // heads
    _check_angles(sd, K)
    decays = _decays(sd, heads)

    out: dict[str, torch.Tensor] = {}
    perm = torch.cat([torch.arange(0, K, 2), torch.arange(1, K, 2)])
    for key, t in sd.items():
        m = re.match(r"layers\.(\d+)\.(.+)$", key)
        if m and m.group(2) in _LAYER_KEYS:
            ours = f"layers.{m.group(1)}.{_LAYER_KEYS[m.group(2)]}"
            if m.group(2) in ("retention.q_proj.weight", "retention.k_proj.weight"):
                t = t.reshape(heads, K, d)[:, perm].reshape(heads * K, d)
            out[ours] = t
        elif key not in _TOP_KEYS:
            raise CheckpointError(f"torchscale tensor {key!r} has no counterpart in streamret's RetNet")
    if "layer_norm.weight" not in sd:
        raise CheckpointError("no final layer_norm.weight: streamret needs the pre-norm decoder's final norm")
    out["norm.weight"] = sd["layer_norm.weight"]
    for i in range(n_layers):
        out.setdefault(f"layers.{i}.attn.g_norm.weight", torch.ones(V, dtype=emb.dtype))

    scale = 1.0 if no_scale_embedding else math.sqrt(d)
    out["embeddings.weight"] = emb * scale if scale != 1.0 else emb
    head = sd.get("output_projection.weight")
    tied = head is not None and scale == 1.0 and torch.equal(head, emb)
    if head is not None and not tied:
        out["lm_head.weight"] = head
    config = RetNetConfig(
        vocab_size=vocab, d_model=d, n_layers=n_layers, n_heads=heads, head_k_dim=K, head_v_dim=V,
        ffn_dim=sd["layers.0.ffn.fc1.weight"].shape[0], decays=decays, norm_eps=layernorm_eps,
        rope_base=10000.0, rope_freqs="torchscale", tie_embeddings=tied, lm_head=head is not None,
    )
    return config, out


def _strip_prefix(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    anchor = next((k for k in state_dict if k.endswith("embed_tokens.weight")), None)
    if anchor is None:
        raise CheckpointError("no '*embed_tokens.weight' tensor: not a torchscale RetNet state dict")
    prefix = anchor.removesuffix("embed_tokens.weight")
    return {k.removeprefix(prefix): v for k, v in state_dict.items() if k.startswith(prefix)}


def _num_heads(sd: Mapping[str, torch.Tensor], given: int | None) -> int:
    buf = sd.get("retnet_rel_pos.decay")
    if buf is not None:
        if given is not None and given != buf.numel():
            raise CheckpointError(f"decoder_retention_heads={given} but retnet_rel_pos.decay has {buf.numel()} heads")
        return buf.numel()
    if given is None:
        raise CheckpointError("the state dict has no retnet_rel_pos.decay buffer, so the head count is unknown: "
                              "pass decoder_retention_heads=")
    return given


def _check_angles(sd: Mapping[str, torch.Tensor], K: int) -> None:
    """torchscale's angle buffer is each linspace frequency twice (interleaved pairs)."""
    angle = sd.get("retnet_rel_pos.angle")
    if angle is None:
        return
    want = rotary_inv_freq(K, 10000.0, "torchscale").repeat_interleave(2)
    if angle.shape != want.shape or not torch.allclose(angle.float().cpu(), want, rtol=1e-5, atol=0):
        raise CheckpointError("retnet_rel_pos.angle is not 10000^-linspace(0, 1, K/2) interleaved; this rotary "
                              "variant is not supported")


def _decays(sd: Mapping[str, torch.Tensor], heads: int) -> tuple[float, ...] | None:
    """None (our default) when the buffer holds log(1 - 2^(-5-h)), else the buffer's decays."""
    buf = sd.get("retnet_rel_pos.decay")
    if buf is None:
        return None
    g = torch.exp(buf.double().cpu())
    default = 1.0 - torch.pow(2.0, -5.0 - torch.arange(heads, dtype=torch.float64))
    if torch.allclose(g, default, rtol=1e-6, atol=0):
        return None
    return tuple(g.tolist())
