"""A tiny .distill-like folder for the tests of the distillation recipe and the quality benchmark: a small
BERT-style tokenizer, a random teacher in Hugging Face layout, and synthetic sources on a few topics."""

from __future__ import annotations

import json
import random
from pathlib import Path

import torch
from safetensors.torch import save_file
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers

from streamret.model.retnet import RetNetConfig
from streamret.train.prepare import write_source
from streamret.train.teacher import CLS_ID, SEP_ID, convert_teacher

WORDS = ("the river cat dog stone light night day water fire king law code file memory stream table "
         "query index data kernel bus device driver verse lord song earth heaven house field tree").split()
HIDDEN = 32


def tokenizer_json(path) -> None:
    """A small BERT-style WordPiece tokenizer with [CLS]=101 and [SEP]=102, as the teacher's."""
    vocab = {f"[unused{i}]": i for i in range(103)}
    vocab.update({"[PAD]": 0, "[UNK]": 100, "[CLS]": CLS_ID, "[SEP]": SEP_ID})
    vocab = {k: v for k, v in vocab.items() if not (k.startswith("[unused") and v in (0, 100, CLS_ID, SEP_ID))}
    for piece in [*WORDS, ".", ",", "##s", "##ing", "##ed"] + [chr(c) for c in range(97, 123)]:
        vocab.setdefault(piece, len(vocab))
    tok = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    tok.save(str(path))


def hf_teacher(folder, vocab_size: int) -> None:
    """Random weights in Hugging Face BertModel layout (what the teacher package ships)."""
    g = torch.Generator().manual_seed(0)
    d, ffn, n_layers = HIDDEN, 64, 2

    def r(*shape):
        return torch.randn(*shape, generator=g) * 0.1

    sd = {"embeddings.word_embeddings.weight": r(vocab_size, d), "embeddings.position_embeddings.weight": r(512, d),
          "embeddings.token_type_embeddings.weight": r(2, d), "embeddings.LayerNorm.weight": 1 + r(d),
          "embeddings.LayerNorm.bias": r(d)}
    for i in range(n_layers):
        p = f"encoder.layer.{i}."
        for name in ("attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense"):
            sd[p + name + ".weight"], sd[p + name + ".bias"] = r(d, d), r(d)
        sd[p + "intermediate.dense.weight"], sd[p + "intermediate.dense.bias"] = r(ffn, d), r(ffn)
        sd[p + "output.dense.weight"], sd[p + "output.dense.bias"] = r(d, ffn), r(d)
        for name in ("attention.output.LayerNorm", "output.LayerNorm"):
            sd[p + name + ".weight"], sd[p + name + ".bias"] = 1 + r(d), r(d)
    folder.mkdir(parents=True, exist_ok=True)
    save_file(sd, str(folder / "model.safetensors"))
    cfg = {"hidden_size": d, "num_hidden_layers": n_layers, "num_attention_heads": 4, "intermediate_size": ffn,
           "layer_norm_eps": 1e-12, "max_position_embeddings": 512, "vocab_size": vocab_size}
    (folder / "config.json").write_text(json.dumps(cfg))
    tokenizer_json(folder / "tokenizer.json")


def text(rng: random.Random, n_words: int, topic: list[str]) -> str:
    """Words of a topic in sentences (a capital after each full stop, as the quality benchmark splits them)."""
    words = [rng.choice(topic) + rng.choice(["", "", "s", "ing"]) for _ in range(n_words)]
    ends = [rng.random() < 0.1 for _ in words]
    return " ".join((w.capitalize() if i and ends[i - 1] else w) + ("." if end else "")
                    for i, (w, end) in enumerate(zip(words, ends)))


def make_distill_dir(root: Path, doc_words: tuple[int, int] = (300, 1500), docs_per_source: int = 6) -> Path:
    """A .distill-like folder: two training sources, one held-out source, a converted tiny teacher."""
    root.mkdir(parents=True, exist_ok=True)
    hf = root / "hf"
    probe = root / "probe.json"
    tokenizer_json(probe)
    hf_teacher(hf, Tokenizer.from_file(str(probe)).get_vocab_size())
    convert_teacher(hf, root / "teacher", quantize="embeddings")
    rng = random.Random(0)
    sources = {"alpha": ("train", WORDS[:10]), "beta": ("train", WORDS[10:20]), "held": ("eval", WORDS[20:])}
    manifest = {"sources": {}}
    for name, (split, topic) in sources.items():
        docs = [(f"{name}/{i}", text(rng, rng.randint(*doc_words), topic)) for i in range(docs_per_source)]
        write_source(docs, root / "data" / f"{name}.jsonl.xz")
        manifest["sources"][name] = {"split": split}
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root


def student_config(vocab: int) -> RetNetConfig:
    return RetNetConfig(vocab_size=vocab, d_model=HIDDEN, n_layers=2, n_heads=2, head_k_dim=8, head_v_dim=16,
                        ffn_dim=64, embed_dim=HIDDEN)
