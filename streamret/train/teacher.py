"""The distillation teacher: all-MiniLM-L6-v2 (a 6-layer BERT, mean pooling, L2 norm) in plain PyTorch.

Plain torch instead of transformers/sentence-transformers keeps the GPU job independent of their
versions; `scripts/check_teacher.py` checks it against sentence-transformers. Weights travel to the
GPU as int8 with one scale per output row (a third of fp32, cosine to the fp32 teacher > 0.999,
measured by that script), dequantised to the compute dtype on load.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

CLS_ID, SEP_ID, PAD_ID = 101, 102, 0
WINDOW = 256  # sentence-transformers' max_seq_length for all-MiniLM-L6-v2, [CLS] and [SEP] included
CONTENT = WINDOW - 2  # text tokens per window


class MiniLM(nn.Module):
    """BERT encoder with sentence-transformers' mean pooling and L2 normalisation."""

    def __init__(self, cfg: dict):
        super().__init__()
        self.cfg = cfg
        d, n_layers = cfg["hidden_size"], cfg["num_hidden_layers"]
        self.n_heads, self.eps = cfg["num_attention_heads"], cfg["layer_norm_eps"]
        self.word = nn.Embedding(cfg["vocab_size"], d)
        self.pos = nn.Embedding(cfg["max_position_embeddings"], d)
        self.type0 = nn.Parameter(torch.zeros(d))  # token type 0 only
        self.emb_norm = nn.LayerNorm(d, eps=self.eps)
        ffn = cfg["intermediate_size"]
        self.layers = nn.ModuleList(_BertLayer(d, ffn, self.n_heads, self.eps) for _ in range(n_layers))
        self.known_ids: torch.Tensor | None = None  # [vocab] bool on the CPU, for a teacher shrunk to some tokens

    @property
    def device(self) -> torch.device:
        return self.word.weight.device

    def forward(self, ids: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """ids, mask [B, L] (mask 1 for real tokens; None: no padding) -> L2-normalised mean-pooled [B, d] float32."""
        L = ids.shape[1]
        x = self.word(ids) + self.pos.weight[:L] + self.type0
        x = self.emb_norm(x)
        attn_mask = None if mask is None else mask[:, None, None, :].bool()
        for layer in self.layers:
            x = layer(x, attn_mask)
        if mask is None:
            return F.normalize(x.float().mean(1), dim=-1)
        m = mask[..., None].to(torch.float32)
        pooled = (x.float() * m).sum(1) / m.sum(1).clamp(min=1)
        return F.normalize(pooled, dim=-1)

    @torch.inference_mode()
    def embed_windows(self, windows: list[list[int]], batch_tokens: int = 1 << 18) -> torch.Tensor:
        """Embed text-token windows (each <= CONTENT tokens, no specials): [CLS] w [SEP], padded per batch.

        Windows are sorted by length so that a batch wastes little on padding. Returns [n, d] float32.
        """
        if any(len(w) > CONTENT for w in windows):
            raise ValueError(f"a teacher window holds at most {CONTENT} text tokens; split longer text first")
        if self.known_ids is not None:
            used = torch.tensor([t for w in windows for t in w], dtype=torch.long)
            unknown = used[~self.known_ids[used]].unique()
            if len(unknown):
                raise ValueError(f"token ids {unknown[:10].tolist()} are not in this shrunk teacher (shrink_teacher "
                                 "kept only the tokens of its text); use the full teacher for other text")
        out = torch.empty(len(windows), self.cfg["hidden_size"], device=self.device)
        order = sorted(range(len(windows)), key=lambda i: len(windows[i]))
        i = 0
        while i < len(order):
            L = len(windows[order[min(len(order) - 1, i)]]) + 2
            n = max(1, batch_tokens // max(L, 1))
            group = order[i : i + n]
            L = max(len(windows[j]) for j in group) + 2
            ids = torch.full((len(group), L), PAD_ID, dtype=torch.long)
            mask = torch.zeros(len(group), L, dtype=torch.long)
            for r, j in enumerate(group):
                w = [CLS_ID, *windows[j], SEP_ID]
                ids[r, : len(w)] = torch.tensor(w)
                mask[r, : len(w)] = 1
            out[torch.tensor(group, device=self.device)] = self(ids.to(self.device), mask.to(self.device))
            i += len(group)
        return out


class _BertLayer(nn.Module):
    def __init__(self, d: int, ffn: int, n_heads: int, eps: float):
        super().__init__()
        self.n_heads = n_heads
        self.qkv = nn.Linear(d, 3 * d)
        self.attn_out = nn.Linear(d, d)
        self.attn_norm = nn.LayerNorm(d, eps=eps)
        self.ffn_in = nn.Linear(d, ffn)
        self.ffn_out = nn.Linear(ffn, d)
        self.ffn_norm = nn.LayerNorm(d, eps=eps)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor) -> torch.Tensor:
        B, L, d = x.shape
        q, k, v = self.qkv(x).view(B, L, 3, self.n_heads, d // self.n_heads).permute(2, 0, 3, 1, 4)
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
        x = self.attn_norm(x + self.attn_out(a.transpose(1, 2).reshape(B, L, d)))
        return self.ffn_norm(x + self.ffn_out(F.gelu(self.ffn_in(x))))


def _hf_to_ours(sd: dict[str, torch.Tensor], n_layers: int) -> dict[str, torch.Tensor]:
    """Rename a Hugging Face BertModel state dict to MiniLM's keys (q, k, v fused into one matmul)."""
    out = {
        "word.weight": sd["embeddings.word_embeddings.weight"],
        "pos.weight": sd["embeddings.position_embeddings.weight"],
        "type0": sd["embeddings.token_type_embeddings.weight"][0],
        "emb_norm.weight": sd["embeddings.LayerNorm.weight"],
        "emb_norm.bias": sd["embeddings.LayerNorm.bias"],
    }
    for i in range(n_layers):
        p, o = f"encoder.layer.{i}.", f"layers.{i}."
        for part in ("weight", "bias"):
            out[o + "qkv." + part] = torch.cat([sd[f"{p}attention.self.{n}.{part}"] for n in ("query", "key", "value")])
            out[o + "attn_out." + part] = sd[f"{p}attention.output.dense.{part}"]
            out[o + "attn_norm." + part] = sd[f"{p}attention.output.LayerNorm.{part}"]
            out[o + "ffn_in." + part] = sd[f"{p}intermediate.dense.{part}"]
            out[o + "ffn_out." + part] = sd[f"{p}output.dense.{part}"]
            out[o + "ffn_norm." + part] = sd[f"{p}output.LayerNorm.{part}"]
    return out


def convert_teacher(hf_dir: str | Path, out_dir: str | Path, quantize: str = "embeddings") -> Path:
    """Write the teacher as MiniLM weights + config + tokenizer.

    quantize: "embeddings" stores the word embeddings (half of all weights) as int8 and the rest as
    fp16; "all" stores every matrix as int8; "none" stores fp16.
    """
    if quantize not in ("embeddings", "all", "none"):
        raise ValueError(f"quantize={quantize!r}; use 'embeddings', 'all' or 'none'")
    hf_dir, out_dir = Path(hf_dir), Path(out_dir)
    cfg = json.loads((hf_dir / "config.json").read_text())
    sd = _hf_to_ours(load_file(str(hf_dir / "model.safetensors")), cfg["num_hidden_layers"])
    out_dir.mkdir(parents=True, exist_ok=True)
    save_file(_pack(sd, quantize), str(out_dir / "teacher.safetensors"))
    (out_dir / "config.json").write_text(json.dumps(cfg, indent=1))
    write_plain_tokenizer(hf_dir / "tokenizer.json", out_dir / "tokenizer.json")
    return out_dir


def shrink_teacher(src: str | Path, out_dir: str | Path, keep_ids: list[int], with_tokenizer: bool = True) -> Path:
    """Re-store a converted teacher smaller: every matrix int8 and only the word embeddings of `keep_ids`.

    For a job that reads known text only (the quality benchmark's held-out sources, a training pack):
    the rows kept are the tokens that text uses; `load_teacher` refuses windows with any other token.
    with_tokenizer=False leaves tokenizer.json out (a training pack takes the student's, the same file).
    """
    src, out_dir = Path(src), Path(out_dir)
    sd = _unpack(load_file(str(src / "teacher.safetensors")))
    ids = torch.tensor(sorted({*keep_ids, CLS_ID, SEP_ID, PAD_ID}), dtype=torch.int32)  # specials frame each window
    sd["word.weight"] = sd["word.weight"][ids.long()]
    packed = _pack(sd, "all")
    packed["word.ids"] = ids
    out_dir.mkdir(parents=True, exist_ok=True)
    save_file(packed, str(out_dir / "teacher.safetensors"))
    for name in ("config.json", "tokenizer.json") if with_tokenizer else ("config.json",):
        (out_dir / name).write_bytes((src / name).read_bytes())
    return out_dir


def _pack(sd: dict[str, torch.Tensor], quantize: str) -> dict[str, torch.Tensor]:
    """int8 with one scale per output row for the word embeddings ("embeddings") or every matrix but the
    positions ("all"); fp16 for the rest."""
    packed: dict[str, torch.Tensor] = {}
    for name, w in sd.items():
        w = w.float()
        if name == "word.weight" and quantize != "none" or quantize == "all" and w.dim() == 2 and name != "pos.weight":
            scale = w.abs().amax(dim=1, keepdim=True).clamp(min=1e-12) / 127.0
            packed[name + ".q8"] = torch.round(w / scale).to(torch.int8).contiguous()
            packed[name + ".scale"] = scale.squeeze(1).contiguous()
        else:
            packed[name] = w.half().contiguous()
    return packed


def _unpack(packed: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Inverse of `_pack`: float32 weights (a "word.ids" entry passes through)."""
    sd = {}
    for name, t in packed.items():
        if name.endswith(".scale"):
            continue
        if name.endswith(".q8"):
            base = name[: -len(".q8")]
            sd[base] = t.float() * packed[base + ".scale"].float()[:, None]
        else:
            sd[name] = t if name == "word.ids" else t.float()
    return sd


def write_plain_tokenizer(src: str | Path, dst: str | Path) -> None:
    """Copy an HF tokenizer.json without its truncation and padding (the engine feeds unbounded text)."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(src))
    tok.no_truncation()
    tok.no_padding()
    tok.save(str(dst))


def load_teacher(folder: str | Path, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32) -> MiniLM:
    """Load a folder written by `convert_teacher`, dequantised to `dtype`, in eval mode."""
    folder = Path(folder)
    cfg = json.loads((folder / "config.json").read_text())
    sd = _unpack(load_file(str(folder / "teacher.safetensors")))
    model = MiniLM(cfg)
    ids = sd.pop("word.ids", None)
    if ids is not None:  # a shrunk teacher (shrink_teacher): the other rows stay NaN and are refused
        rows = sd["word.weight"]
        sd["word.weight"] = torch.full((cfg["vocab_size"], rows.shape[1]), float("nan"))
        sd["word.weight"][ids.long()] = rows
        model.known_ids = torch.zeros(cfg["vocab_size"], dtype=torch.bool)
        model.known_ids[ids.long()] = True
    model.load_state_dict(sd)
    return model.to(device=device, dtype=dtype).eval()
