"""Distil the default model: a RetNet student trained to reproduce all-MiniLM-L6-v2's embeddings.

One command on one GPU (the data folder comes from `python -m streamret.train.prepare`, or the smaller
`python -m streamret.train.train_pack` that fits one device call):

    python -m streamret.train.distill --data .distill --minutes 6 --out $OUT
    python -m streamret.train.distill --data .train --init streamret/assets/default --minutes 7.5 --lr 3e-4 \
        --warmup-frac 0.05 --out $OUT

The student's embedding is exactly what the engine serves, `model.embed(pool_sum, pool_count)`:
the mean of final hidden states over a span, the linear embedding head, L2 norm. Each step trains
it, in the parallel form under bf16 autocast, on four kinds of example (see `data.py`, `docs.py`):
  passages      one window of 254 tokens           -> teacher embedding of the window
  short spans   16..128 tokens (sentence-sized)     -> teacher embedding of the span
  long windows  k consecutive 254-token chunks     -> each chunk, pooled with the whole prefix as
                                                      context, to its teacher embedding (segments),
                                                      and the whole window to the mean of them
  documents     whole windows of 2k..16k tokens    -> the document embedding finds its document from
                                                      passages of it among the step's documents and
                                                      a bank of recent ones (InfoNCE) and matches
                                                      the teacher's chunk mean
plus a relational term that matches the batch's student cosine matrix to the teacher's, which is what
retrieval depends on, and optionally (--metric) the span and document errors measured in the metric the
`document` role scores with: the documents' map C^-1 weighs an error e in a document or a query by e C^-1 e,
so directions of small variance count more (session 44: no gain over a control leg; bench/RESULTS.md), and
optionally (--passage-nce-weight) a passage InfoNCE: a run of 8..64 tokens (log-uniform, one length a step) cut out of
a window finds the rest of the window among the step's passages (neighbouring windows of one document among them), as
the held-out passage search asks of the student's own embeddings, where the teacher's targets only copy the teacher.
Teacher targets are computed on the fly (fp16), so every epoch sees new cuts. --init starts from a model folder (the
shipped default model) instead of the teacher's word embeddings. --minutes bounds this run's wall time from the
process start (loading included); the learning-rate schedule spans --schedule-minutes of training (default: what this
run can train), kept across resumed runs. Every --ckpt-minutes the full training state goes to --ckpt (resumable with
the same command) and fp16 weight shards to --out; at the end a quick evaluation is written too.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from tokenizers import Tokenizer

from streamret.model.checkpoint import load_checkpoint
from streamret.model.document_map import MAP_FILE, DocumentMap
from streamret.model.retnet import RetNet, RetNetConfig

from .data import Batch, Corpus, Sampler, draw_query_len, load_corpus, teacher_targets
from .docs import DOC_FORWARDS, DocBank, doc_step, teacher_doc_targets
from .export import save_shards
from .prepare import sources_of_split
from .teacher import CONTENT, load_teacher

# The shipped student: 4 wide layers (the engine is launch-bound at this size), the teacher's
# WordPiece vocabulary and width; ~19.1M parameters, ~38 MB in fp16.
STUDENT = RetNetConfig(
    vocab_size=30522, d_model=384, n_layers=4, n_heads=4, head_k_dim=64, head_v_dim=128, ffn_dim=896,
    embed_dim=384,
)


@dataclass
class TrainConfig:
    minutes: float = 6.0  # this run's wall time from the process start (evaluation and export come after)
    schedule_minutes: float = 0.0  # training minutes the lr schedule spans, over resumed runs (0: this run's)
    max_steps: int = 0  # stop after this many steps as well (0: time only)
    lr: float = 1e-3
    min_lr_frac: float = 0.05
    warmup_frac: float = 0.03
    weight_decay: float = 0.01
    n_passages: int = 384  # 254-token passages per step
    short_tokens: int = 16384  # tokens of short spans per step (one span length per step, cycling)
    short_lengths: tuple[int, ...] = (16, 24, 32, 48, 64, 96, 128)
    n_long: int = 24  # long windows per step
    long_chunks: int = 8  # 254-token chunks per long window
    relational_weight: float = 1.0
    doc_weight: float = 1.0
    relational_spans: int = 1024
    doc_tokens: int = 131072  # tokens of whole documents per step (0: no document objective)
    doc_lengths: tuple[int, ...] = (2048, 4096, 8192, 16384)  # document window per step, cycling
    doc_max: int = 64  # most documents per step
    doc_group: int = 8  # documents drawn from one source at a time (each other's hard negatives)
    # tokens per block of the document forward (memory: one block's activations). H200, 2026-12-03 (RESULTS): the
    # document phase took 590 ms a step at 1024, 470 at 2048, 440 at 4096 (peak 30, 33, 50 GiB); the gradient
    # is exact at any block
    doc_block: int = 4096
    doc_forward: str = "parallel"  # the graph-free document forward: parallel or chunkwise (docs.DOC_FORWARDS)
    doc_query_grad: int = 1  # 1: the document InfoNCE also moves the student's query passages; 0: documents only
    doc_queries: int = 4  # query passages per document (64..128 tokens, one length per step)
    doc_bank: int = 1024  # the last steps' document embeddings kept as extra negatives (0: none)
    doc_temperature: float = 0.05
    doc_nce_weight: float = 0.2  # its gradient ~2x the other terms' at the shipped model (CPU, RESULTS)
    doc_mean_weight: float = 1.0
    # a document_map.safetensors (or a model folder holding one): the document InfoNCE scores documents through
    # this fixed map, as the `document` role serves them ("": plainly). Fit it again for the new weights after.
    doc_map: str = ""
    # a document_map.safetensors fitted on the teacher's window embeddings with power 0.5 (python -m
    # streamret.train.document_map --teacher ... --power 0.5): its C^-1/2 measures the span and document errors
    # as the document role's map weighs them, at weight metric_weight ("": no metric term)
    metric: str = ""
    metric_weight: float = 1.0
    # the passage InfoNCE (0: off): a run of 8..64 tokens (data.draw_query_len) cut out of a 254-token window finds
    # the rest of it among the step's passage_pairs passages, drawn passage_group consecutive windows of one
    # document at a time
    passage_nce_weight: float = 0.0
    passage_pairs: int = 256
    passage_group: int = 4
    passage_temperature: float = 0.05
    ckpt_minutes: float = 2.0
    seed: int = 0


def build_student(teacher, seed: int, config: RetNetConfig = STUDENT) -> RetNet:
    """The student, initialised with the teacher's word embeddings (same vocabulary and width)."""
    vocab, width = teacher.word.weight.shape
    if (config.vocab_size, config.d_model, config.embed_dim) != (vocab, width, width):
        raise ValueError("the student needs the teacher's vocab_size and width as d_model and embed_dim; "
                         f"got {config.vocab_size}, {config.d_model}, {config.embed_dim} for teacher "
                         f"{(vocab, width)}")
    model = RetNet(config).init_weights(seed, std=0.02)
    with torch.no_grad():
        model.embeddings.weight.copy_(teacher.word.weight.float().cpu())
        model.embed_head.weight.copy_(torch.eye(config.embed_dim, config.d_model))
        for block in model.layers:  # residual outputs start small (GPT-2's scaled init)
            block.attn.o_proj.weight.mul_(1 / math.sqrt(2 * config.n_layers))
            block.mlp.down_proj.weight.mul_(1 / math.sqrt(2 * config.n_layers))
    return model


def student_embeddings(model: RetNet, batch: Batch, device) -> tuple[torch.Tensor, torch.Tensor]:
    """(span embeddings [S, e], window embeddings [n_multi, e]) through the model's own pooling + head."""
    ids = torch.from_numpy(batch.ids).to(device)
    hidden, _ = model(ids, mode="parallel", cu_seqlens=batch.cu_seqlens().to(device))
    span_of_token = torch.from_numpy(batch.span_of_token).to(device)
    span_sum = torch.zeros(len(batch.span_len), hidden.shape[-1], device=device).index_add_(
        0, span_of_token, hidden.float()
    )
    span_count = torch.from_numpy(batch.span_len).to(device)
    spans = model.embed(span_sum, span_count)
    multi = batch.multi_span_seqs
    if len(multi) == 0:
        return spans, spans[:0]
    seq_of_span = torch.from_numpy(batch.seq_of_span).to(device)
    seq_sum = torch.zeros(len(batch.lengths), hidden.shape[-1], device=device).index_add_(0, seq_of_span, span_sum)
    seq_count = torch.from_numpy(batch.lengths).to(device)
    m = torch.from_numpy(multi).to(device)
    return spans, model.embed(seq_sum[m], seq_count[m])


def doc_targets(batch: Batch, span_targets: torch.Tensor) -> torch.Tensor:
    """Normalised mean of the teacher's span embeddings, per multi-span sequence."""
    seq_of_span = torch.from_numpy(batch.seq_of_span).to(span_targets.device)
    sums = torch.zeros(len(batch.lengths), span_targets.shape[1], device=span_targets.device)
    sums.index_add_(0, seq_of_span, span_targets)
    return F.normalize(sums[torch.from_numpy(batch.multi_span_seqs).to(span_targets.device)], dim=-1)


def distill_loss(spans, docs, t_spans, t_docs, cfg: TrainConfig, rng: np.random.Generator,
                 metric: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Cosine losses of spans and documents, the relational term and (given `metric`, training_metric's matrix)
    the same errors in that metric: |(s - t) M|^2 / 2, which is 1 - cos(s, t) for unit vectors where M = I."""
    out = {"span": (1 - (spans * t_spans).sum(-1)).mean()}
    out["doc"] = (1 - (docs * t_docs).sum(-1)).mean() if len(docs) else spans.new_zeros(())
    pick = torch.from_numpy(rng.permutation(len(spans))[: cfg.relational_spans]).to(spans.device)
    s, t = spans[pick], t_spans[pick]
    out["relational"] = ((s @ s.T - t @ t.T) ** 2).mean()
    out["total"] = out["span"] + cfg.doc_weight * out["doc"] + cfg.relational_weight * out["relational"]
    if metric is not None:
        out["metric"] = (((spans - t_spans) @ metric) ** 2).sum(-1).mean() / 2
        if len(docs):
            out["metric"] = out["metric"] + cfg.doc_weight * (((docs - t_docs) @ metric) ** 2).sum(-1).mean() / 2
        out["total"] = out["total"] + cfg.metric_weight * out["metric"]
    return out


def passage_nce(model: RetNet, pairs: Batch, device, temperature: float) -> dict[str, torch.Tensor]:
    """InfoNCE of queries against passages (Sampler.passage_pairs: the first half of the sequences are the
    passages, the second their queries), the student's embeddings on both sides; and its in-batch top-1."""
    emb, _ = student_embeddings(model, pairs, device)
    n = len(pairs.lengths) // 2
    logits = emb[n:].float() @ emb[:n].float().T / temperature
    gold = torch.arange(n, device=logits.device)
    return {"passage_nce": F.cross_entropy(logits, gold),
            "passage_top1": (logits.argmax(1) == gold).float().mean().detach()}


def step_groups(cfg: TrainConfig, step: int) -> list[tuple[int, int, int]]:
    short = cfg.short_lengths[step % len(cfg.short_lengths)]
    groups = [(cfg.n_passages, 1, CONTENT), (max(1, cfg.short_tokens // short), 1, short)]
    if cfg.n_long:
        groups.append((cfg.n_long, cfg.long_chunks, CONTENT))
    return [g for g in groups if g[0] > 0]


class PhaseTimes:
    """Where a training step's time goes (--phase-times): the device is synchronized at each phase's end, so the
    phases add up to the step's wall time (and the step runs a little slower than without). Off: no syncs."""

    PHASES = ("sample", "teacher", "student", "passage", "doc_sample", "doc_teacher", "doc_student", "optimizer")

    def __init__(self, enabled: bool, device: torch.device):
        self.enabled, self.device = enabled, device
        self.total = dict.fromkeys(self.PHASES, 0.0)
        self.steps, self.since = 0, 0.0

    def start(self) -> None:
        if self.enabled:
            self.since = time.perf_counter()

    def end(self, phase: str) -> None:
        if self.enabled:
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            now = time.perf_counter()
            self.total[phase] += now - self.since
            self.since = now

    def step_done(self) -> None:
        self.steps += 1

    def take(self) -> dict[str, float]:
        """Mean ms a step of each phase since the last take (empty when off)."""
        if not self.enabled or not self.steps:
            return {}
        out = {k: round(v / self.steps * 1e3, 1) for k, v in self.total.items()}
        self.total, self.steps = dict.fromkeys(self.PHASES, 0.0), 0
        return out


class StepProfiler:
    """--profile-steps N: the torch profiler (CPU and, on a GPU, CUDA activity) over N steps of this run after its
    first `warmup` (compiles, caches, the allocator settle), then its top ops by device time (CPU time on the CPU)
    written to OUT/profile.txt. 0: off."""

    def __init__(self, steps: int, out: Path, device: torch.device, warmup: int = 10, rows: int = 40):
        self.steps, self.out, self.device, self.warmup, self.rows = steps, out, device, warmup, rows
        self.seen, self.prof = 0, None

    def before_step(self) -> None:
        if self.steps and self.seen == self.warmup:
            from torch.profiler import ProfilerActivity, profile

            acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if self.device.type == "cuda" else [])
            self.prof = profile(activities=acts)
            self.prof.__enter__()

    def after_step(self) -> None:
        self.seen += 1
        if self.prof is not None and self.seen == self.warmup + self.steps:
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            self.prof.__exit__(None, None, None)
            key = "cuda_time_total" if self.device.type == "cuda" else "cpu_time_total"
            table = self.prof.key_averages().table(sort_by=key, row_limit=self.rows, max_name_column_width=70)
            self.out.mkdir(parents=True, exist_ok=True)
            head = f"{self.steps} training steps after {self.warmup}, by {key}"
            (self.out / "profile.txt").write_text(f"{head}\n{table}\n")
            print(f"profile of {self.steps} steps -> {self.out / 'profile.txt'}", flush=True)
            self.prof = None


def lr_at(progress: float, cfg: TrainConfig) -> float:
    """Linear warm-up, then cosine decay to min_lr_frac, over the training time (progress 0..1)."""
    if progress < cfg.warmup_frac:
        return cfg.lr * max(progress / cfg.warmup_frac, 0.01)
    p = min(1.0, (progress - cfg.warmup_frac) / (1 - cfg.warmup_frac))
    return cfg.lr * (cfg.min_lr_frac + (1 - cfg.min_lr_frac) * 0.5 * (1 + math.cos(math.pi * p)))


# ----------------------------------------------------------------------------------------------
# resumable training state: safetensors + JSON, no pickle


def save_state(path: Path, model: RetNet, opt: torch.optim.Optimizer, info: dict) -> None:
    path.mkdir(parents=True, exist_ok=True)
    tensors = {f"model.{k}": v.detach().float().cpu().contiguous() for k, v in model.state_dict().items()}
    names = [n for n, _ in model.named_parameters()]
    for name, p in zip(names, opt.param_groups[0]["params"], strict=True):
        st = opt.state.get(p, {})
        for key in ("exp_avg", "exp_avg_sq"):
            if key in st:
                tensors[f"opt.{name}.{key}"] = st[key].detach().cpu().contiguous()
        if "step" in st:
            info.setdefault("opt_steps", {})[name] = float(st["step"])
    tmp = path / "state.safetensors.tmp"
    save_file(tensors, str(tmp))
    os.replace(tmp, path / "state.safetensors")
    (path / "state.json.tmp").write_text(json.dumps(info))
    os.replace(path / "state.json.tmp", path / "state.json")


def load_state(path: Path, model: RetNet, opt: torch.optim.Optimizer) -> dict | None:
    if not (path / "state.json").exists():
        return None
    info = json.loads((path / "state.json").read_text())
    tensors = load_file(str(path / "state.safetensors"))
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    dev = model.device
    for name, p in model.named_parameters():
        if f"opt.{name}.exp_avg" in tensors:
            opt.state[p] = {
                "step": torch.tensor(info["opt_steps"][name], dtype=torch.float32, device=dev),  # fused Adam: on device
                "exp_avg": tensors[f"opt.{name}.exp_avg"].to(dev),
                "exp_avg_sq": tensors[f"opt.{name}.exp_avg_sq"].to(dev),
            }
    return info


# ----------------------------------------------------------------------------------------------


@torch.no_grad()
def evaluate(model: RetNet, teacher, corpus: Corpus, device, seed: int = 1, n: int = 512) -> dict:
    """Mean cosine student vs teacher on held-out passages, short spans and long windows."""
    model.eval()
    sampler = Sampler(corpus, seed=seed)
    out = {}
    for name, groups in [("passage_254", [(n, 1, CONTENT)]), ("span_32", [(n, 1, 32)]),
                         ("long_8x254", [(max(1, n // 8), 8, CONTENT)])]:
        batch = sampler.batch(groups)
        t_spans = teacher_targets(teacher, batch.windows, device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            spans, docs = student_embeddings(model, batch, device)
        out[f"{name}_cos"] = float((spans * t_spans).sum(-1).mean())
        if len(docs):
            out[f"{name}_doc_cos"] = float((docs * doc_targets(batch, t_spans)).sum(-1).mean())
    model.train()
    return out


@contextmanager
def torch_kernels() -> Iterator[None]:
    """Run the elementwise ops' PyTorch references also where no gradient is needed (unless the user
    chose a backend): the document forward without a graph then computes what its re-run with one does."""
    key = "STREAMRET_KERNEL_BACKEND"
    before = os.environ.get(key)
    os.environ.setdefault(key, "torch")
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(key, None)


def tokenizer_file(data: Path, init: str | None) -> Path:
    """The teacher folder's tokenizer.json, else the --init model's (a pack may leave it out: they are one)."""
    for path in [data / "teacher" / "tokenizer.json"] + ([Path(init) / "tokenizer.json"] if init else []):
        if path.is_file():
            return path
    raise FileNotFoundError(f"no tokenizer.json in {data / 'teacher'}" + (f" or {init}" if init else "")
                            + "; pass --init with the model folder whose tokenizer the teacher shares")


def check_teacher_covers(teacher, corpus: Corpus, where: Path) -> None:
    """A shrunk teacher (train_pack) knows only its text's tokens; any other token would give NaN targets."""
    if teacher.known_ids is None or not corpus.docs:
        return
    used = torch.from_numpy(np.unique(np.concatenate(corpus.docs)).astype(np.int64))
    unknown = used[~teacher.known_ids[used]]
    if len(unknown):
        raise ValueError(f"the teacher in {where} lacks token ids {unknown[:10].tolist()} of the training text; "
                         "build the pack again (python -m streamret.train.train_pack) from the same .distill")


def init_history(init: str | None) -> dict | None:
    """The --init model's own training.json (its recipe and log, with its parents' nested the same way), so a
    continued run's training.json names every run behind its weights; None without --init or without one."""
    path = Path(init) / "training.json" if init else None
    return json.loads(path.read_text()) if path is not None and path.exists() else None


def initial_model(args: argparse.Namespace, teacher, cfg: TrainConfig, student: RetNetConfig) -> RetNet:
    if args.init:
        model, _ = load_checkpoint(args.init)
        if model.config.vocab_size != teacher.cfg["vocab_size"]:
            raise ValueError(f"--init {args.init} has vocab_size {model.config.vocab_size}, the teacher "
                             f"{teacher.cfg['vocab_size']}: the student must read the teacher's tokens")
        print(f"student initialised from {args.init}", flush=True)
        return model.float()
    return build_student(teacher, cfg.seed, student)


def training_doc_map(path: str, dim: int, device, flag: str = "--doc-map") -> tuple[torch.Tensor, torch.Tensor] | None:
    """(mean, matrix) of the document map at `path` (a document_map.safetensors or a folder holding one) on
    `device`, for docs.doc_step; None for "". Any weights' map is taken: it is a fixed scoring of the documents,
    which the run's weights move away from (fit the map again after the run)."""
    if not path:
        return None
    file = Path(path) / MAP_FILE if Path(path).is_dir() else Path(path)
    if not file.is_file():
        raise SystemExit(f"{flag} {path}: no {MAP_FILE} there; fit one with python -m streamret.train.document_map")
    found = DocumentMap.read(file)
    if found.dim != dim:
        raise SystemExit(f"{flag} {path}: a map for embeddings of dim {found.dim}, the student's are {dim}")
    return torch.from_numpy(found.mean).to(device), torch.from_numpy(found.matrix).to(device)


def training_metric(path: str, dim: int, device) -> torch.Tensor | None:
    """The matrix of the map at `path` (see TrainConfig.metric) scaled to a mean squared gain of 1 (an error
    spread evenly over the dimensions costs what the cosine loss charges), on `device`; None for ""."""
    found = training_doc_map(path, dim, device, "--metric")
    if found is None:
        return None
    matrix = found[1].double()
    return (matrix / (matrix @ matrix.T).trace().div(dim).sqrt()).float()


def doc_batch_size(cfg: TrainConfig, length: int) -> int:
    """Documents in a step of cfg.doc_tokens document tokens at this window length (2..doc_max)."""
    return int(np.clip(cfg.doc_tokens // length, 2, cfg.doc_max))


def train(args: argparse.Namespace, cfg: TrainConfig, student: RetNetConfig = STUDENT) -> dict:
    t_start = time.time()
    with torch_kernels():
        return _train(args, cfg, student, t_start)


def _train(args: argparse.Namespace, cfg: TrainConfig, student: RetNetConfig, t_start: float) -> dict:
    device = torch.device(args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu"))
    torch.manual_seed(cfg.seed)
    doc_map = training_doc_map(cfg.doc_map, student.out_embed_dim, device)  # (a bad path stops before the data loads)
    metric = training_metric(cfg.metric, student.out_embed_dim, device)
    torch.backends.cuda.matmul.allow_tf32 = True
    data = Path(args.data)
    manifest = json.loads((data / "manifest.json").read_text())
    train_names, eval_names = sources_of_split(data, "train"), sources_of_split(data, "eval")
    tok_path = tokenizer_file(data, args.init)
    tok = Tokenizer.from_file(str(tok_path))
    corpus = load_corpus(data / "data", train_names, tok)
    held_out = load_corpus(data / "data", eval_names, tok) if eval_names else None
    print(f"tokenized {corpus.n_tokens() / 1e6:.1f}M train tokens ({len(corpus.docs)} docs), "
          f"{held_out.n_tokens() / 1e6 if held_out else 0:.1f}M held-out, in {time.time() - t_start:.0f}s", flush=True)
    teacher_dtype = torch.float16 if device.type == "cuda" else torch.float32
    teacher = load_teacher(data / "teacher", device, teacher_dtype)
    check_teacher_covers(teacher, corpus, data / "teacher")
    model = initial_model(args, teacher, cfg, student).to(device)
    student = model.config
    print(f"student: {model.num_parameters() / 1e6:.2f}M parameters, {asdict(student)}", flush=True)
    params = [p for _, p in model.named_parameters()]
    opt = torch.optim.AdamW(params, lr=cfg.lr, betas=(0.9, 0.98), eps=1e-8, weight_decay=0.0,
                            fused=device.type == "cuda")
    decay_ids = {id(p) for p in params if p.dim() == 2}
    ckpt = Path(args.ckpt)
    info = load_state(ckpt, model, opt) if not args.fresh else None
    step, elapsed = (info["step"], info["elapsed_s"]) if info else (0, 0.0)
    rng = np.random.default_rng([cfg.seed, step])  # a resumed run draws new windows, not the same ones
    sampler = Sampler(corpus, seed=int(rng.integers(1 << 31)))
    if info:
        print(f"resumed from {ckpt} at step {step}, {elapsed / 60:.1f} min trained", flush=True)
    log: list[dict] = info.get("log", []) if info else []
    deadline = t_start + cfg.minutes * 60
    # the schedule: given, else kept from the checkpoint, else what this run has left to train
    schedule_s = (cfg.schedule_minutes * 60 or (info or {}).get("schedule_s")
                  or elapsed + max(deadline - time.time(), 1.0))
    print(f"lr schedule over {schedule_s / 60:.2f} training minutes; this run stops at "
          f"{cfg.minutes:.2f} min of wall time", flush=True)
    bank = DocBank(cfg.doc_bank, student.out_embed_dim, device) if cfg.doc_tokens and cfg.doc_bank else None
    last_ckpt = time.time()
    tokens = doc_tokens = 0
    t_loop = time.time()
    phases = PhaseTimes(args.phase_times, device)
    profiler = StepProfiler(args.profile_steps, Path(args.out), device)
    while time.time() < deadline and elapsed < schedule_s and not (cfg.max_steps and step >= cfg.max_steps):
        t_step = time.time()
        profiler.before_step()
        phases.start()
        batch = sampler.batch(step_groups(cfg, step))
        phases.end("sample")
        t_spans = teacher_targets(teacher, batch.windows, device)
        t_docs = doc_targets(batch, t_spans)
        phases.end("teacher")
        lr = lr_at(elapsed / schedule_s, cfg)
        for g in opt.param_groups:
            g["lr"] = lr
        opt.zero_grad(set_to_none=True)
        try:
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
                spans, docs = student_embeddings(model, batch, device)
                losses = distill_loss(spans.float(), docs.float(), t_spans, t_docs, cfg, rng, metric)
            losses["total"].backward()
            del spans, docs
            phases.end("student")
            if cfg.passage_nce_weight:
                pairs = sampler.passage_pairs(cfg.passage_pairs, cfg.passage_group, draw_query_len(rng))
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
                    p_losses = passage_nce(model, pairs, device, cfg.passage_temperature)
                (cfg.passage_nce_weight * p_losses["passage_nce"]).backward()
                losses.update({k: v.detach() for k, v in p_losses.items()})
                losses["total"] = losses["total"].detach() + cfg.passage_nce_weight * losses["passage_nce"]
                phases.end("passage")
            if cfg.doc_tokens:
                length = cfg.doc_lengths[step % len(cfg.doc_lengths)]
                doc_batch = sampler.doc_batch(doc_batch_size(cfg, length), length, cfg.doc_group, cfg.doc_queries,
                                              int(rng.integers(64, min(128, CONTENT, length) + 1)))
                phases.end("doc_sample")
                t_whole, t_queries = teacher_doc_targets(teacher, doc_batch, device)
                phases.end("doc_teacher")
                doc_losses = doc_step(model, doc_batch, t_whole, t_queries, bank, block=cfg.doc_block,
                                      temperature=cfg.doc_temperature, mean_weight=cfg.doc_mean_weight,
                                      nce_weight=cfg.doc_nce_weight, device=device, forward=cfg.doc_forward,
                                      query_grad=bool(cfg.doc_query_grad), doc_map=doc_map)
                losses.update(doc_losses)
                losses["total"] = (losses["total"].detach() + cfg.doc_mean_weight * doc_losses["doc_mean"]
                                   + cfg.doc_nce_weight * doc_losses["doc_nce"])
                doc_tokens += doc_batch.ids.size
                phases.end("doc_student")
        except torch.cuda.OutOfMemoryError:
            # one GPU call is all we get: shrink the batch instead of losing the run
            cfg = replace(cfg, n_passages=cfg.n_passages // 2, short_tokens=cfg.short_tokens // 2,
                          passage_pairs=max(2, cfg.passage_pairs // 2),
                          n_long=cfg.n_long // 2, doc_tokens=cfg.doc_tokens // 2, doc_max=max(2, cfg.doc_max // 2))
            print(f"out of GPU memory at step {step}; halving the batch: {asdict(cfg)}", flush=True)
            spans = docs = losses = None
            opt.zero_grad(set_to_none=True)
            torch.cuda.empty_cache()
            continue
        gnorm = torch.nn.utils.clip_grad_norm_(params, 1.0)
        with torch.no_grad():  # decoupled weight decay on matrices only
            for p in params:
                if id(p) in decay_ids:
                    p.mul_(1 - lr * cfg.weight_decay)
        opt.step()
        phases.end("optimizer")
        phases.step_done()
        profiler.after_step()
        step += 1
        tokens += len(batch.ids)
        if device.type == "cuda":
            torch.cuda.synchronize()
        elapsed += time.time() - t_step
        done = time.time() >= deadline or elapsed >= schedule_s or step == cfg.max_steps
        if step % args.log_every == 0 or done:
            loop_s = max(time.time() - t_loop, 1e-9)
            row = {"step": step, "min": round(elapsed / 60, 3), "lr": lr, "gnorm": float(gnorm),
                   "tok_per_s": round(tokens / loop_s), "doc_tok_per_s": round(doc_tokens / loop_s),
                   **{k: round(float(v.detach()), 5) for k, v in losses.items()}}
            if device.type == "cuda":
                row["peak_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 1)
            if args.phase_times:
                row["phase_ms"] = phases.take()
            log.append(row)
            print(json.dumps(row), flush=True)
        if time.time() - last_ckpt > cfg.ckpt_minutes * 60 or done:
            state = {"step": step, "elapsed_s": elapsed, "schedule_s": schedule_s, "log": log, "train": asdict(cfg)}
            save_state(ckpt, model, opt, state)
            save_shards(model, tok_path, args.out, {k: v for k, v in state.items() if k != "log"})
            last_ckpt = time.time()
            print(f"checkpoint at step {step} -> {ckpt}, weights -> {args.out}", flush=True)
    result = {"step": step, "minutes": elapsed / 60, "schedule_minutes": schedule_s / 60,
              "wall_minutes": (time.time() - t_start) / 60, "train_tokens_seen": tokens,
              "doc_tokens_seen": doc_tokens, "init": args.init, "data": manifest.get("pack", {}),
              "train": asdict(cfg), "student": asdict(student), "params": model.num_parameters(),
              "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
              "torch": torch.__version__, "log": log, "init_training": init_history(args.init)}
    if held_out is not None:
        result["held_out"] = evaluate(model, teacher, held_out, device, n=args.eval_n)
    result["train_sample"] = evaluate(model, teacher, corpus, device, n=args.eval_n)
    print(json.dumps({k: result[k] for k in ("held_out", "train_sample") if k in result}), flush=True)
    save_shards(model, tok_path, args.out, result)
    return result


def _tuple_of_ints(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers like 2048,4096; got {text!r}") from None


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Distil the default RetNet from all-MiniLM-L6-v2.")
    ap.add_argument("--data", default=".distill", help="folder written by streamret.train.prepare or train_pack")
    ap.add_argument("--out", default=os.environ.get("OUT", "distill-out"), help="fp16 shards, config, tokenizer")
    ap.add_argument("--ckpt", default=".distill-ckpt", help="resumable training state")
    ap.add_argument("--fresh", action="store_true", help="ignore an existing checkpoint in --ckpt")
    ap.add_argument("--init", default=None,
                    help="start from this model folder (e.g. streamret/assets/default) when --ckpt has no state")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--log-every", type=int, default=50)
    ap.add_argument("--eval-n", type=int, default=512)
    ap.add_argument("--phase-times", action="store_true",
                    help="log each step phase's mean ms (syncs the device at every phase's end: a little slower)")
    ap.add_argument("--profile-steps", type=int, default=0,
                    help="torch profiler over this many steps after the first 10; top ops to OUT/profile.txt")
    parsers = {"float": float, "int": int, "str": str, "tuple[int, ...]": _tuple_of_ints}
    for f in TrainConfig.__dataclass_fields__.values():
        if f.type in parsers:
            ap.add_argument("--" + f.name.replace("_", "-"), type=parsers[f.type], default=f.default)
    args = ap.parse_args(argv)
    cfg = TrainConfig(**{k: getattr(args, k) for k in TrainConfig.__dataclass_fields__ if hasattr(args, k)})
    if cfg.doc_forward not in DOC_FORWARDS:
        ap.error(f"--doc-forward {cfg.doc_forward!r}; use one of {', '.join(DOC_FORWARDS)}")
    if cfg.doc_query_grad not in (0, 1):
        ap.error(f"--doc-query-grad {cfg.doc_query_grad}; use 1 (the queries move too) or 0 (documents only)")
    if cfg.passage_nce_weight and (cfg.passage_pairs < 2 or cfg.passage_group < 1 or cfg.passage_temperature <= 0):
        ap.error(f"--passage-pairs {cfg.passage_pairs}, --passage-group {cfg.passage_group}, --passage-temperature "
                 f"{cfg.passage_temperature}: the passage InfoNCE needs pairs >= 2, group >= 1, temperature > 0")
    train(args, cfg)


if __name__ == "__main__":
    main()
