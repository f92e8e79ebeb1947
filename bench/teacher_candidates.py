"""Which teacher earns its place: all-MiniLM-L6-v2 against other sentence-transformers models (issue 18, item 2).

    python bench/teacher_candidates.py --data .quality/heldout --minilm .quality/teacher \
        --candidates /tmp/teachers/m/all-mpnet-base-v2 --out OUT [--passages 400 --docs 32]

Builds bench/quality.py's evaluation sets with its own builders and default parameters (seed 0, the
MiniLM tokenizer: the fingerprint is that of quality.py's teacher phase), takes a seeded subset of
them (--passages, --docs; 0 = the full set) and scores every model on the same subset:
(a) passages: recall@1/@10 of the query sentence -> its passage among the subset's passages;
(b) long documents: recall@10 of a query passage -> its document among the subset's documents, each
    document embedded by its first window and by its window embeddings averaged, per issue 18's
    length buckets; tokens/s of each model on the documents' windows.

Every model reads the same windows (<= 254 text tokens, quality.py's CONTENT): the windows the student
is distilled on. A candidate's vocabulary must hold MiniLM's WordPiece tokens (all-mpnet-base-v2's is
MiniLM's shifted by its 4 special tokens, with the same normaliser); its ids are looked up by token
string, so it sees exactly the token pieces MiniLM sees.

A candidate is a sentence-transformers folder (config.json, model.safetensors, tokenizer.json or
vocab.txt, 1_Pooling/config.json). Supported: MPNet with mean pooling (all-mpnet-base-v2), run in plain
PyTorch here. --reference-check compares that forward with transformers' MPNetModel when transformers
can be imported (not a project dependency), and the candidate's own tokenizer with the id mapping.
--minilm-reference takes quality.py's teacher-phase embeddings of the full sets and checks that MiniLM
through this script gives the same embeddings and the same recall on the subset.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from quality import (  # noqa: E402
    DEFAULT_SETS,
    EvalSets,
    averaged,
    build_eval_sets,
    by_length,
    device_name,
    doc_windows,
    recall,
    speed,
    teacher_embed,
)

from streamret.model.tokenizer import HFTokenizer  # noqa: E402
from streamret.train.teacher import CLS_ID, CONTENT, PAD_ID, SEP_ID, MiniLM, _BertLayer, load_teacher  # noqa: E402

# ----------------------------------------------------------------------------------------------
# MPNet (all-mpnet-base-v2) in plain PyTorch


def relative_position_bucket(rel: torch.Tensor, num_buckets: int = 32, max_distance: int = 128) -> torch.Tensor:
    """MPNet's bidirectional T5-style buckets of key position - query position."""
    half = num_buckets // 2
    n = -rel
    out = (n < 0).long() * half
    n = n.abs()
    exact = half // 2
    large = exact + (torch.log(n.float().clamp(min=1) / exact) / math.log(max_distance / exact)
                     * (half - exact)).long()
    return out + torch.where(n < exact, n, large.clamp(max=half - 1))


class MPNet(MiniLM):
    """MPNet encoder (post-norm BERT layers plus a relative-position bias shared by all layers), mean pooling,
    L2 norm. Takes MiniLM token ids and maps them to its own (`id_map`), so that MiniLM's `embed_windows`
    batching serves it unchanged."""

    def __init__(self, cfg: dict, id_map: torch.Tensor):
        nn.Module.__init__(self)  # not MiniLM's layout: only its batching and pooling are shared
        self.cfg = cfg
        d, n_heads, eps = cfg["hidden_size"], cfg["num_attention_heads"], cfg["layer_norm_eps"]
        self.pad_id = cfg["pad_token_id"]
        self.word = nn.Embedding(cfg["vocab_size"], d)
        self.pos = nn.Embedding(cfg["max_position_embeddings"], d)
        self.emb_norm = nn.LayerNorm(d, eps=eps)
        self.rel_bias = nn.Embedding(cfg["relative_attention_num_buckets"], n_heads)
        self.layers = nn.ModuleList(_BertLayer(d, cfg["intermediate_size"], n_heads, eps)
                                    for _ in range(cfg["num_hidden_layers"]))
        self.register_buffer("id_map", id_map, persistent=False)
        self.known_ids = None

    def forward(self, ids: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """MiniLM ids, mask [B, L] (right padding) -> L2-normalised mean-pooled [B, d] float32."""
        B, L = ids.shape
        if mask is None:
            mask = torch.ones_like(ids)
        own = self.id_map[ids]
        # positions count from pad_id + 1 as in fairseq/HF (a padded slot's position does not reach the pooling)
        x = self.emb_norm(self.word(own) + self.pos.weight[self.pad_id + 1 : self.pad_id + 1 + L])
        ar = torch.arange(L, device=ids.device)
        bias = self.rel_bias(relative_position_bucket(ar[None, :] - ar[:, None], self.rel_bias.num_embeddings))
        attn = bias.permute(2, 0, 1)[None].to(x.dtype)  # [1, H, L, L]
        attn = attn.masked_fill(~mask.bool()[:, None, None, :], float("-inf"))
        for layer in self.layers:
            x = layer(x, attn)
        m = mask[..., None].to(torch.float32)
        return F.normalize((x.float() * m).sum(1) / m.sum(1).clamp(min=1), dim=-1)


def mpnet_state(sd: dict[str, torch.Tensor], n_layers: int) -> dict[str, torch.Tensor]:
    """Rename a Hugging Face MPNetModel state dict to MPNet's keys (q, k, v fused; the unused pooler dropped)."""
    out = {
        "word.weight": sd["embeddings.word_embeddings.weight"],
        "pos.weight": sd["embeddings.position_embeddings.weight"],
        "emb_norm.weight": sd["embeddings.LayerNorm.weight"],
        "emb_norm.bias": sd["embeddings.LayerNorm.bias"],
        "rel_bias.weight": sd["encoder.relative_attention_bias.weight"],
    }
    for i in range(n_layers):
        p, o = f"encoder.layer.{i}.", f"layers.{i}."
        for part in ("weight", "bias"):
            out[o + "qkv." + part] = torch.cat([sd[f"{p}attention.attn.{n}.{part}"] for n in "qkv"])
            out[o + "attn_out." + part] = sd[f"{p}attention.attn.o.{part}"]
            out[o + "attn_norm." + part] = sd[f"{p}attention.LayerNorm.{part}"]
            out[o + "ffn_in." + part] = sd[f"{p}intermediate.dense.{part}"]
            out[o + "ffn_out." + part] = sd[f"{p}output.dense.{part}"]
            out[o + "ffn_norm." + part] = sd[f"{p}output.LayerNorm.{part}"]
    return out


def candidate_vocab(folder: Path) -> dict[str, int]:
    tj = folder / "tokenizer.json"
    if tj.is_file():
        return json.loads(tj.read_text())["model"]["vocab"]
    return {line.rstrip("\n"): i for i, line in enumerate((folder / "vocab.txt").open(encoding="utf-8"))}


def id_map_from(minilm_vocab: dict[str, int], vocab: dict[str, int], specials: dict[int, str]) -> torch.Tensor:
    """MiniLM id -> candidate id by token string; MiniLM's [CLS]/[SEP]/[PAD] -> the candidate's own specials."""
    table = torch.full((max(minilm_vocab.values()) + 1,), -1, dtype=torch.long)
    for tok, i in minilm_vocab.items():
        if tok in vocab:
            table[i] = vocab[tok]
    for i, tok in specials.items():
        table[i] = vocab[tok]
    missing = [t for t, i in minilm_vocab.items() if table[i] < 0]
    if missing:
        raise ValueError(f"{len(missing)} MiniLM tokens are not in the candidate's vocabulary (e.g. {missing[:5]}); "
                         "this script needs a candidate with MiniLM's WordPiece vocabulary")
    return table


def describe_weights(folder: Path, sd: dict[str, torch.Tensor], cfg: dict) -> dict:
    """What the folder ships: file sizes, the weights' dtypes, parameter count and a few tensors' statistics."""
    weights = folder / "model.safetensors"
    h = hashlib.sha256()
    with weights.open("rb") as f:
        for block in iter(lambda: f.read(1 << 24), b""):
            h.update(block)
    d, layers = cfg["hidden_size"], cfg["num_hidden_layers"]
    stats = {}
    for name in ("embeddings.word_embeddings.weight", "encoder.layer.0.attention.attn.q.weight",
                 f"encoder.layer.{layers - 1}.output.dense.weight", "encoder.relative_attention_bias.weight"):
        if name in sd:
            t = sd[name].float()
            stats[name] = {"shape": list(t.shape), "mean": float(t.mean()), "std": float(t.std()),
                           "absmax": float(t.abs().max())}
    return {
        "files": {str(p.relative_to(folder)): p.stat().st_size for p in sorted(folder.rglob("*")) if p.is_file()},
        "weights_sha256": h.hexdigest(),
        "dtypes": sorted({str(t.dtype) for t in sd.values()}),
        "parameters": int(sum(t.numel() for k, t in sd.items() if t.is_floating_point())),
        "expected_shapes_ok": sd["embeddings.word_embeddings.weight"].shape == (cfg["vocab_size"], d)
        and sd[f"encoder.layer.{layers - 1}.intermediate.dense.weight"].shape == (cfg["intermediate_size"], d),
        "tensor_stats": stats,
        "config": {k: cfg[k] for k in ("model_type", "hidden_size", "num_hidden_layers", "num_attention_heads",
                                       "intermediate_size", "vocab_size", "max_position_embeddings") if k in cfg},
    }


def load_candidate(folder: Path, minilm_vocab: dict[str, int], device, dtype) -> tuple[MiniLM, dict]:
    """A sentence-transformers folder -> (model taking MiniLM ids, description of what it ships)."""
    cfg = json.loads((folder / "config.json").read_text())
    pooling = json.loads((folder / "1_Pooling" / "config.json").read_text())
    if cfg.get("model_type") != "mpnet" or not pooling.get("pooling_mode_mean_tokens"):
        raise ValueError(f"{folder}: model_type {cfg.get('model_type')!r} with pooling {pooling}; this script runs "
                         "MPNet with mean pooling (all-mpnet-base-v2); MiniLM itself comes through --minilm")
    sd = load_file(str(folder / "model.safetensors"))
    info = describe_weights(folder, sd, cfg)
    vocab = candidate_vocab(folder)
    model = MPNet(cfg, id_map_from(minilm_vocab, vocab, {CLS_ID: "<s>", SEP_ID: "</s>", PAD_ID: "<pad>"}))
    model.load_state_dict(mpnet_state(sd, cfg["num_hidden_layers"]))
    st = folder / "sentence_bert_config.json"
    info["max_seq_length"] = json.loads(st.read_text()).get("max_seq_length") if st.is_file() else None
    return model.to(device=device, dtype=dtype).eval(), info


# ----------------------------------------------------------------------------------------------
# checks


@torch.no_grad()
def reference_check(model: MPNet, folder: Path, tok: HFTokenizer, sentences: list[str]) -> dict:
    """Our forward against transformers' MPNetModel (mean pooling, L2 norm) on the same ids, fp32 on the CPU;
    and the candidate's own tokenizer against the MiniLM-id mapping."""
    out: dict = {}
    from tokenizers import Tokenizer

    own_tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
    own_tok.no_truncation()
    own_tok.no_padding()
    windows = [tok.encode(s)[:CONTENT] for s in sentences]
    mapped = [model.id_map[torch.tensor([CLS_ID, *w, SEP_ID])].tolist() for w in windows]
    out["tokenizer_matches_mapping"] = all(own_tok.encode(s).ids == m for s, m in zip(sentences, mapped, strict=True))
    try:
        from transformers import MPNetModel
    except ImportError as e:
        out["transformers"] = f"not importable ({e}): forward not checked"
        return out
    import transformers

    ref = MPNetModel.from_pretrained(str(folder), add_pooling_layer=False).eval()
    ours = model.to(device="cpu", dtype=torch.float32).embed_windows(windows)
    L = max(map(len, mapped))
    ids = torch.tensor([m + [model.pad_id] * (L - len(m)) for m in mapped])
    mask = (torch.arange(L)[None] < torch.tensor([len(m) for m in mapped])[:, None]).long()
    h = ref(input_ids=ids, attention_mask=mask).last_hidden_state
    theirs = F.normalize((h * mask[..., None]).sum(1) / mask.sum(1, keepdim=True), dim=-1)
    cos = (ours * theirs).sum(-1)
    out.update({"transformers": transformers.__version__, "sentences": len(sentences),
                "cosine_min": float(cos.min()), "cosine_mean": float(cos.mean())})
    return out


# ----------------------------------------------------------------------------------------------
# the subset and the scores


def subset(sets: EvalSets, n_passages: int, n_docs: int, seed: int) -> tuple[EvalSets, dict]:
    """A seeded subset: n_passages passages (with their queries), n_docs documents (with all their queries)."""
    rng = np.random.default_rng(seed)
    P = len(sets.passages) if not n_passages else min(n_passages, len(sets.passages))
    D = len(sets.doc_ids) if not n_docs else min(n_docs, len(sets.doc_ids))
    pi = sorted(rng.choice(len(sets.passages), P, replace=False).tolist())
    di = sorted(rng.choice(len(sets.doc_ids), D, replace=False).tolist())
    new_doc = {d: j for j, d in enumerate(di)}
    qi = [i for i, g in enumerate(sets.doc_gold) if g in new_doc]
    sub = EvalSets([sets.passages[i] for i in pi], [sets.queries[i] for i in pi], [sets.doc_texts[d] for d in di],
                   [sets.doc_ids[d] for d in di], [sets.doc_queries[i] for i in qi],
                   [new_doc[sets.doc_gold[i]] for i in qi])
    return sub, {"passages": pi, "docs": di, "doc_queries": qi}


def embed_all(model, sets: EvalSets, device, batch_tokens: int) -> tuple[dict[str, torch.Tensor], dict]:
    """The embeddings quality.py's teacher phase writes (same names), and tokens/s on the documents' windows."""
    teacher_embed(model, [sets.doc_ids[0][:CONTENT]] * 8, device, batch_tokens)  # warm-up
    emb = {name: teacher_embed(model, getattr(sets, name), device, batch_tokens)[0]
           for name in ("passages", "queries", "doc_queries")}
    emb["teacher_truncated"] = teacher_embed(model, [ids[:CONTENT] for ids in sets.doc_ids], device, batch_tokens)[0]
    windows, owner = doc_windows(sets.doc_ids)
    e, secs, tokens = teacher_embed(model, windows, device, batch_tokens)
    emb["teacher_chunks"] = averaged(e, owner, len(sets.doc_ids))
    return emb, speed(secs, tokens)


def scores(emb: dict[str, torch.Tensor], sets: EvalSets) -> dict:
    gold = torch.arange(len(sets.passages))
    out = {"passages": {k: float(v.mean()) for k, v in recall(emb["queries"], emb["passages"], gold).items()}}
    q_gold = torch.tensor(sets.doc_gold)
    q_len = np.array([len(x) for x in sets.doc_ids])[q_gold.numpy()]
    for name, label in (("teacher_truncated", "first_window"), ("teacher_chunks", "windows_averaged")):
        hits = recall(emb["doc_queries"], emb[name], q_gold)
        out[label] = {"recall@1": float(hits["recall@1"].mean()), "recall@10": float(hits["recall@10"].mean()),
                      "by_length": by_length(hits["recall@10"], q_len)}
    return out


def minilm_reference(npz: Path, emb: dict[str, torch.Tensor], picked: dict, full: EvalSets, sub: EvalSets) -> dict:
    """quality.py's own MiniLM embeddings (full sets) against this script's, on the subset; and both scores."""
    with np.load(npz) as z:
        ref = {k: torch.from_numpy(z[k].astype(np.float32)) for k in z.files}
    rows = {"passages": picked["passages"], "queries": picked["passages"], "doc_queries": picked["doc_queries"],
            "teacher_truncated": picked["docs"], "teacher_chunks": picked["docs"]}
    sub_ref = {k: F.normalize(ref[k][rows[k]], dim=-1) for k in rows}
    return {"file": str(npz),
            "min_cosine": {k: float((sub_ref[k] * emb[k]).sum(-1).min()) for k in rows},
            "scores_from_reference_on_subset": scores(sub_ref, sub),
            "scores_from_reference_on_full_sets": scores({k: F.normalize(v, dim=-1) for k, v in ref.items()}, full)}


def print_table(result: dict) -> None:
    s = result["subset"]
    print(f"\nsubset: {s['passages']} passages; {s['docs']} documents, {s['doc_queries']} document queries")
    heads = None  # the buckets: recall@10 of the windows-averaged documents
    for name, m in result["models"].items():
        fw, wa = m["scores"]["first_window"], m["scores"]["windows_averaged"]
        if heads is None:
            heads = [f"{r['min_tokens'] // 1000}k+ ({r['queries']}q)" for r in wa["by_length"]]
            print("| model | passage R@1 / R@10 | doc R@1 / R@10 first window | doc R@1 / R@10 windows averaged | "
                  + " | ".join(heads) + " | tokens/s |")
        cells = " | ".join("-" if r["recall@10"] is None else f"{r['recall@10']:.3f}" for r in wa["by_length"])
        p = m["scores"]["passages"]
        print(f"| {name} | {p['recall@1']:.3f} / {p['recall@10']:.3f} | {fw['recall@1']:.3f} / {fw['recall@10']:.3f} | "
              f"{wa['recall@1']:.3f} / {wa['recall@10']:.3f} | {cells} | {m['speed']['tokens_per_s']:,.0f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(ROOT / ".quality" / "heldout"))
    ap.add_argument("--minilm", default=str(ROOT / ".quality" / "teacher"), help="quality_pack's MiniLM teacher")
    ap.add_argument("--candidates", nargs="*", default=[], help="sentence-transformers folders (MPNet)")
    ap.add_argument("--out", required=True, help="folder for teacher_candidates_<device>.json")
    ap.add_argument("--passages", type=int, default=0, help="passages in the subset (0: all 2,000)")
    ap.add_argument("--docs", type=int, default=0, help="documents in the subset (0: all 256)")
    ap.add_argument("--subset-seed", type=int, default=0)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--reference-check", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--minilm-reference", default=None, help="quality.py teacher phase's teacher_embeddings.npz")
    args = ap.parse_args()
    torch.set_grad_enabled(False)
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          "cpu" if args.device == "auto" else args.device)
    cuda = device.type == "cuda"
    dtype = torch.float16 if cuda else torch.float32
    batch_tokens = 1 << 18 if cuda else 1 << 13

    tok = HFTokenizer(args.minilm)
    t0 = time.perf_counter()
    full = build_eval_sets(Path(args.data), tok, DEFAULT_SETS)
    sets, picked = subset(full, args.passages, args.docs, args.subset_seed)
    lengths = [len(x) for x in sets.doc_ids]
    result: dict = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d"), "device": device_name(device), "torch": torch.__version__,
        "dtype": str(dtype), "command": " ".join(sys.argv), "sets": DEFAULT_SETS, "fingerprint": full.fingerprint(),
        "window_text_tokens": CONTENT,
        "subset": {"seed": args.subset_seed, "passages": len(sets.passages), "docs": len(sets.doc_ids),
                   "doc_queries": len(sets.doc_queries), "doc_tokens": int(sum(lengths)),
                   "doc_tokens_min_median_max": [min(lengths), int(np.median(lengths)), max(lengths)],
                   "fingerprint": sets.fingerprint()},
        "models": {},
    }
    print(f"sets built in {time.perf_counter() - t0:.0f} s; fingerprint {full.fingerprint()[:8]}; subset "
          f"{result['subset']}", flush=True)

    minilm = load_teacher(args.minilm, device, dtype)
    models: list[tuple[str, MiniLM, dict]] = [("all-MiniLM-L6-v2", minilm, {"folder": str(args.minilm)})]
    minilm_vocab = candidate_vocab(Path(args.minilm))
    for folder in map(Path, args.candidates):
        model, info = load_candidate(folder, minilm_vocab, device, dtype)
        info["folder"] = str(folder)
        if args.reference_check:
            info["reference_check"] = reference_check(model, folder, tok, [t[:600] for t in full.doc_texts[:8]])
            model = model.to(device=device, dtype=dtype)
            print(f"{folder.name} reference check: {info['reference_check']}", flush=True)
        models.append((folder.name, model, info))

    for name, model, info in models:
        t = time.perf_counter()
        emb, spd = embed_all(model, sets, device, batch_tokens)
        result["models"][name] = {**info, "scores": scores(emb, sets), "speed": spd}
        if name == "all-MiniLM-L6-v2" and args.minilm_reference:
            result["models"][name]["quality_py_reference"] = minilm_reference(
                Path(args.minilm_reference), emb, picked, full, sets)
        print(f"{name}: {time.perf_counter() - t:.0f} s, {json.dumps(result['models'][name]['scores'])[:400]}",
              flush=True)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"teacher_candidates_{device.type}.json"
    path.write_text(json.dumps(result, indent=1))
    print_table(result)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
