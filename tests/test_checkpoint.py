"""Checkpoints: native round trip, fla-hub layout (single and sharded) equal to native, refusals, fingerprint."""

import dataclasses
import json

import pytest
import torch
from safetensors.torch import save_file
from tokenizers import Tokenizer, models, pre_tokenizers

from streamret.model import RetNetConfig, build_random
from streamret.model.checkpoint import (
    CheckpointError,
    fla_config_to_streamret,
    load_checkpoint,
    model_fingerprint,
    model_from_state_dict,
    save_checkpoint,
)
from streamret.model.spec import load_model
from streamret.model.tokenizer import ByteTokenizer, HFTokenizer

CFG = RetNetConfig(vocab_size=300, d_model=32, n_layers=2, n_heads=2, head_k_dim=16, head_v_dim=32, ffn_dim=256,
                   lm_head=True)
IDS = torch.randint(0, 260, (23,), generator=torch.Generator().manual_seed(0))


def perturbed_model(cfg=CFG, seed=0):
    """Random weights with norm weights away from 1, so a norm mapped to the wrong place shows."""
    model = build_random(cfg, seed)
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_(1 + 0.3 * torch.randn(p.shape, generator=g))
    return model.eval()


def hidden(model, ids=IDS):
    with torch.no_grad():
        return model(ids, mode="chunkwise", chunk_size=8)[0]


def word_tokenizer_json() -> str:
    words = ["[UNK]", "the", "stream", "never", "ends", ",", "."]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return tok.to_str()


def fla_config(cfg=CFG, **over) -> dict:
    raw = {
        "model_type": "retnet", "architectures": ["RetNetForCausalLM"], "hidden_size": cfg.d_model,
        "num_hidden_layers": cfg.n_layers, "num_heads": cfg.n_heads, "num_kv_heads": None,
        "expand_k": cfg.head_k_dim * cfg.n_heads / cfg.d_model, "expand_v": cfg.head_v_dim * cfg.n_heads / cfg.d_model,
        "hidden_ratio": 2, "intermediate_size": None, "feature_map": None, "use_short_conv": False,
        "use_output_gate": True, "hidden_act": "swish", "norm_eps": cfg.norm_eps, "vocab_size": cfg.vocab_size,
        "tie_word_embeddings": cfg.tie_embeddings, "fuse_norm": True, "elementwise_affine": True, "attn": None,
    }
    raw.update(over)
    return raw


def fla_tensors(model, prefix="model.", gate_norm="g_norm_swish_gate") -> dict:
    """Our state dict under fla's RetNetForCausalLM names."""
    out = {}
    for k, v in model.state_dict().items():
        k = k.replace("attn.g_norm.", f"attn.{gate_norm}.")
        out[k if k.startswith("lm_head") else prefix + k] = v.clone()
    return out


def write_fla_folder(folder, model, raw=None, shards=1, tokenizer=True, **kw):
    folder.mkdir(parents=True, exist_ok=True)
    tensors = fla_tensors(model, **kw)
    raw = raw or fla_config(model.config)
    (folder / "config.json").write_text(json.dumps(raw))
    if shards == 1:
        save_file(tensors, str(folder / "model.safetensors"))
    else:
        names = sorted(tensors)
        weight_map = {}
        for s in range(shards):
            part = {n: tensors[n] for n in names[s::shards]}
            fname = f"model-{s + 1:05d}-of-{shards:05d}.safetensors"
            save_file(part, str(folder / fname))
            weight_map.update(dict.fromkeys(part, fname))
        (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    if tokenizer:
        (folder / "tokenizer.json").write_text(word_tokenizer_json())
    return folder


# ----------------------------------------------------------------------------------------------
# native layout


def test_native_round_trip_keeps_outputs_and_fingerprint(tmp_path):
    model = perturbed_model()
    save_checkpoint(model, ByteTokenizer(), tmp_path / "ck")
    assert sorted(p.name for p in (tmp_path / "ck").iterdir()) == ["config.json", "model.safetensors"]
    raw = json.loads((tmp_path / "ck" / "config.json").read_text())
    assert raw["format"] == "streamret" and raw["tokenizer"] == {"type": "bytes"}
    loaded, tok = load_checkpoint(tmp_path / "ck")
    assert isinstance(tok, ByteTokenizer) and loaded.config == model.config
    assert torch.equal(hidden(loaded), hidden(model))
    assert model_fingerprint(loaded) == model_fingerprint(model)


def test_native_round_trip_with_hf_tokenizer_tied_head_and_bf16(tmp_path):
    cfg = dataclasses.replace(CFG, tie_embeddings=True, decays=(0.9, 0.99), embed_dim=16)
    model = perturbed_model(cfg).to(torch.bfloat16)
    tok = HFTokenizer.from_json(word_tokenizer_json())
    save_checkpoint(model, tok, tmp_path / "ck")
    loaded, tok2 = load_checkpoint(tmp_path / "ck")
    assert loaded.dtype == torch.bfloat16 and loaded.config == cfg
    assert loaded.lm_head.weight is loaded.embeddings.weight
    assert isinstance(tok2, HFTokenizer) and tok2.encode("the stream ends") == tok.encode("the stream ends")
    assert torch.equal(hidden(loaded, IDS % 7), hidden(model, IDS % 7))
    assert model_fingerprint(loaded) == model_fingerprint(model)


def test_spec_loads_a_folder_and_fingerprint_ignores_run_dtype(tmp_path):
    model = perturbed_model()
    save_checkpoint(model, ByteTokenizer(), tmp_path / "ck")
    a = load_model(str(tmp_path / "ck"), device="cpu", dtype="float32")
    b = load_model(str(tmp_path / "ck"), device="cpu", dtype="bfloat16")
    assert b.model.dtype == torch.bfloat16
    assert a.fingerprint == b.fingerprint == model_fingerprint(model) == model_fingerprint(b.model)


def test_fingerprint_sees_every_weight_and_the_config():
    model = perturbed_model()
    base = model_fingerprint(model)
    assert len(base) == 64 and model_fingerprint(model) == base  # cached
    other = perturbed_model()
    with torch.no_grad():
        other.layers[1].mlp.down_proj.weight[3, 5] += 1e-3
    assert model_fingerprint(other) != base
    same_weights = model_from_state_dict(dataclasses.replace(CFG, decays=(0.9, 0.95)), model.state_dict())
    assert model_fingerprint(same_weights) != base


def test_state_dict_errors_name_the_key():
    sd = perturbed_model().state_dict()
    with pytest.raises(CheckpointError, match="layers.1.mlp.up_proj.weight"):
        model_from_state_dict(CFG, {k: v for k, v in sd.items() if k != "layers.1.mlp.up_proj.weight"})
    with pytest.raises(CheckpointError, match="layers.0.attn.extra"):
        model_from_state_dict(CFG, {**sd, "layers.0.attn.extra": torch.zeros(1)})
    with pytest.raises(CheckpointError, match=r"norm.weight.*\(31,\)"):
        model_from_state_dict(CFG, {**sd, "norm.weight": torch.ones(31)})


def test_pickled_weights_are_refused_with_a_conversion_hint(tmp_path):
    folder = tmp_path / "ck"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(fla_config()))
    (folder / "pytorch_model.bin").write_bytes(b"not even read")
    with pytest.raises(CheckpointError, match="refusing pytorch_model.bin.*save_file"):
        load_checkpoint(folder)
    (tmp_path / "w.pt").write_bytes(b"x")
    with pytest.raises(CheckpointError, match="refusing w.pt"):
        load_checkpoint(tmp_path / "w.pt")


def test_missing_folder_and_foreign_config(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint folder"):
        load_checkpoint(tmp_path / "nope")
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama"}))
    save_file({"x": torch.zeros(1)}, str(tmp_path / "model.safetensors"))
    with pytest.raises(CheckpointError, match="model_type='llama'"):
        load_checkpoint(tmp_path)


# ----------------------------------------------------------------------------------------------
# fla-hub layout


@pytest.mark.parametrize("shards", [1, 3])
def test_fla_layout_gives_the_native_outputs(tmp_path, shards):
    model = perturbed_model()
    write_fla_folder(tmp_path / "fla", model, shards=shards)
    loaded, tok = load_checkpoint(tmp_path / "fla")
    assert loaded.config == CFG
    assert isinstance(tok, HFTokenizer) and tok.vocab_size == 7
    assert torch.equal(hidden(loaded), hidden(model))
    with torch.no_grad():
        assert torch.equal(loaded.logits(hidden(loaded)), model.logits(hidden(model)))
    assert model_fingerprint(loaded) == model_fingerprint(model)


def test_fla_base_model_without_head_and_unfused_norm_name(tmp_path):
    cfg = dataclasses.replace(CFG, lm_head=False)
    model = perturbed_model(cfg)
    raw = fla_config(cfg, architectures=["RetNetModel"], fuse_norm=False)
    write_fla_folder(tmp_path / "fla", model, raw=raw, prefix="", gate_norm="g_norm")
    loaded, _ = load_checkpoint(tmp_path / "fla")
    assert loaded.lm_head is None
    assert torch.equal(hidden(loaded), hidden(model))


def test_fla_tied_head_saved_once(tmp_path):
    cfg = dataclasses.replace(CFG, tie_embeddings=True)
    model = perturbed_model(cfg)
    folder = tmp_path / "fla"
    folder.mkdir()
    tensors = {k: v for k, v in fla_tensors(model).items() if k != "lm_head.weight"}
    save_file(tensors, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps(fla_config(cfg)))
    (folder / "tokenizer.json").write_text(word_tokenizer_json())
    loaded, _ = load_checkpoint(folder)
    assert loaded.config.tie_embeddings and loaded.lm_head.weight is loaded.embeddings.weight
    assert torch.equal(hidden(loaded), hidden(model))


def test_fla_without_affine_gate_norm(tmp_path):
    model = perturbed_model()
    with torch.no_grad():
        for layer in model.layers:
            layer.attn.g_norm.weight.fill_(1.0)
    folder = write_fla_folder(tmp_path / "fla", model, raw=fla_config(elementwise_affine=False))
    for shard in folder.glob("*.safetensors"):
        from safetensors.torch import load_file

        kept = {k: v for k, v in load_file(str(shard)).items() if "g_norm" not in k}
        save_file(kept, str(shard))
    loaded, _ = load_checkpoint(folder)
    assert torch.equal(hidden(loaded), hidden(model))


def test_fla_config_mapping_follows_fla_rules():
    c = fla_config_to_streamret({"model_type": "retnet"})  # fla's defaults are the 1.3B layout
    assert c == RetNetConfig(vocab_size=32000, d_model=2048, n_layers=24, n_heads=8, head_k_dim=256,
                             head_v_dim=512, ffn_dim=2816, norm_eps=1e-6)
    assert fla_config_to_streamret({"hidden_size": 384, "num_heads": 4, "hidden_ratio": 4}).ffn_dim == 1024
    assert fla_config_to_streamret({"hidden_size": 100, "num_heads": 2, "hidden_ratio": None}).ffn_dim == 512
    assert fla_config_to_streamret({"hidden_size": 64, "num_heads": 2, "intermediate_size": 100}).ffn_dim == 100
    c = fla_config_to_streamret({"hidden_size": 64, "num_heads": 4, "expand_k": 0.5, "expand_v": 1.5})
    assert (c.head_k_dim, c.head_v_dim) == (8, 24)
    with pytest.raises(CheckpointError, match="expand_k"):
        fla_config_to_streamret({"hidden_size": 64, "num_heads": 4, "expand_k": 0.3})


@pytest.mark.parametrize(
    "over, match",
    [
        ({"use_short_conv": True}, "use_short_conv"),
        ({"feature_map": "relu"}, "feature_map"),
        ({"num_kv_heads": 1}, "num_kv_heads"),
        ({"use_output_gate": False}, "use_output_gate"),
        ({"attn": {"layers": [1], "num_heads": 2}}, "hybrid"),
        ({"attnres_block_size": 2}, "attnres"),
        ({"hidden_act": "powlu"}, "hidden_act"),
    ],
)
def test_fla_variants_we_do_not_compute_are_refused(tmp_path, over, match):
    write_fla_folder(tmp_path / "fla", perturbed_model(), raw=fla_config(**over))
    with pytest.raises(CheckpointError, match=match):
        load_checkpoint(tmp_path / "fla")


def test_fla_unknown_tensor_and_missing_tokenizer(tmp_path):
    model = perturbed_model()
    folder = write_fla_folder(tmp_path / "a", model, tokenizer=False)
    with pytest.raises(CheckpointError, match="no tokenizer.json"):
        load_checkpoint(folder)
    folder = tmp_path / "b"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(fla_config()))
    save_file({**fla_tensors(model), "model.layers.0.attn.q_conv1d.weight": torch.zeros(4)},
              str(folder / "model.safetensors"))
    with pytest.raises(CheckpointError, match="q_conv1d"):
        load_checkpoint(folder)
