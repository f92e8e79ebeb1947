"""The chaos run shared by tests/test_chaos.py (CI-sized) and bench/chaos.py (long): many streams go through
`streamret.client` while the server is killed with SIGKILL at random points and restarted on the same state
folder and port. Every ack the client library sees is recorded, so the run can tell a chunk lost (the final
applied_seq or token count short) from a chunk applied twice (more tokens than bytes sent; with a record per
chunk, also two non-duplicate acks for one seq).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import numpy as np

from streamret.client import AsyncClient, RetryPolicy

SENTENCES = ["The river ran north. ", "Boats carried grain to the city! ", "Every spring the floods came back; ",
             "people moved uphill. ", "Ärzte und Fähren — 渡し舟 — crossed at dawn. ", "Nobody kept count.\n"]


BOOK = ["It was late in the autumn when the ferryman first saw the lights on the far bank. ",
        "“Who keeps a lamp burning at this hour?” he asked, and nobody answered him. ",
        "The village had three wells, two bakeries and one schoolteacher, Frau Müller, who spoke five languages. ",
        "Her pupils learned to write 渡し舟 and 川 before they could spell their own names in Latin letters! ",
        "In the spring the river rose again — higher than anyone remembered — and the old bridge gave way. ",
        "Was it an accident? The mayor said so; the fishermen did not believe him. ",
        "Prices doubled: bread at 3,50 €, salt at 12 € the kilo, café au lait at the inn for those who could pay. ",
        "She wrote in her diary: «Nous partirons demain, avant l'aube.»\n",
        "The children laughed 😀 and ran down to the water, where the boats lay upturned on the shingle. ",
        "Ελπίδα, the Greek merchant, bought every barrel of oil on the quay… ",
        "By the next winter, the lamp on the far bank had gone out.\n\n"]


def book_text(i: int, n_bytes: int) -> str:
    """Prose of at least n_bytes UTF-8 bytes for a real tokenizer, different for each i: sentences of varied
    words with 2-, 3- and 4-byte characters (ü, —, 渡, 😀), quotes, sentence ends and paragraph breaks."""
    rng = random.Random(i)
    parts, size = [], 0
    while size < n_bytes:
        s = rng.choice(BOOK)
        parts.append(s)
        size += len(s.encode())
    return "".join(parts)


def stream_text(i: int, n_bytes: int) -> str:
    """A text of at least n_bytes UTF-8 bytes, different for each i (multi-byte characters included)."""
    parts, size, j = [], 0, 0
    while size < n_bytes:
        s = SENTENCES[(i * 7 + j * (i % 5 + 1)) % len(SENTENCES)]
        parts.append(s)
        size += len(s.encode())
        j += 1
    return "".join(parts)


class ReferenceEmbeddings:
    """The embedded engine's embedding of a whole text read in one chunk: what an undisturbed run gives (chunk
    invariance). Call it with a text; close() (or `with`) when done."""

    def __init__(self, model: str = "random:tiny"):
        from streamret.engine import Engine

        self.engine = Engine.from_model(model, device="cpu", dtype="float32")
        self._cache: dict[str, tuple[np.ndarray, int]] = {}

    def _run(self, text: str) -> tuple[np.ndarray, int]:
        if text not in self._cache:
            sid = f"ref-{len(self._cache)}"
            self.engine.append(sid, 1, text, flush=True)
            self._cache[text] = self.engine.embedding(sid), self.engine.info(sid).tokens
            self.engine.close(sid)
        return self._cache[text]

    def __call__(self, text: str) -> np.ndarray:
        return self._run(text)[0]

    def tokens(self, text: str) -> int:
        """The token count of an undisturbed run (the byte count for random:<preset>)."""
        return self._run(text)[1]

    def close(self) -> None:
        self.engine.shutdown()

    def __enter__(self) -> ReferenceEmbeddings:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def random_cuts(data: bytes, rng: random.Random, mean_bytes: int) -> list[bytes]:
    """data cut at random byte offsets (inside words and multi-byte characters too), chunks of 1..2*mean bytes."""
    out, at = [], 0
    while at < len(data):
        n = rng.randint(1, 2 * mean_bytes)
        out.append(data[at : at + n])
        at += n
    return out


@dataclass
class StreamOutcome:
    chunks: int  # numbered chunks, the final flush included
    applied_seq: int = 0
    tokens: int = 0
    bytes_sent: int = 0
    expected_tokens: int = 0  # tokens of an undisturbed run (random:<preset>: one per byte)
    applied: Counter = field(default_factory=Counter)  # seq -> non-duplicate acks seen
    duplicates: int = 0  # acks of resent chunks the server already had
    rel_err: float = float("nan")

    @property
    def lost(self) -> int:
        """Chunks the server does not hold at the end (a seq short, or fewer tokens than an undisturbed run)."""
        return max(0, self.chunks - self.applied_seq) + (self.tokens < self.expected_tokens)

    @property
    def applied_twice(self) -> int:
        """Tokens applied twice in the final state: surplus tokens over an undisturbed run (random:<preset>
        reads one token per byte, so these count bytes; every chunk but the final flush carries one)."""
        return max(0, self.tokens - self.expected_tokens)

    @property
    def acked_twice(self) -> int:
        """Chunks acknowledged as applied (not as duplicates) more than once. With a durable record after every
        chunk this must be 0: an ack comes only once the chunk is durable, so no crash can make the server
        apply it again. With sparser records a crash legitimately rolls back chunks acked since the last one."""
        return sum(n - 1 for n in self.applied.values() if n > 1)


@dataclass
class ChaosReport:
    streams: dict[str, StreamOutcome]
    kills: int
    seconds: float

    @property
    def chunks_sent(self) -> int:
        return sum(o.chunks for o in self.streams.values())

    @property
    def lost(self) -> int:
        return sum(o.lost for o in self.streams.values())

    @property
    def applied_twice(self) -> int:
        return sum(o.applied_twice for o in self.streams.values())

    @property
    def acked_twice(self) -> int:
        return sum(o.acked_twice for o in self.streams.values())

    @property
    def resent_duplicates(self) -> int:
        return sum(o.duplicates for o in self.streams.values())

    @property
    def worst_rel_err(self) -> float:
        return max(o.rel_err for o in self.streams.values())

    def line(self) -> str:
        return (f"kills survived {self.kills}, streams {len(self.streams)}, chunks sent {self.chunks_sent}, "
                f"lost {self.lost}, applied twice {self.applied_twice}, acked as applied twice {self.acked_twice}, "
                f"resent and acked as duplicates "
                f"{self.resent_duplicates}, worst embedding rel. error {self.worst_rel_err:.2e}, "
                f"{self.seconds:.1f} s")


Kill = Callable[[random.Random], Awaitable[None]]


def kill_and_restart(server, down_s: tuple[float, float] = (0.0, 0.3)) -> Kill:
    """A Kill for a helpers_server.ServeProcess: SIGKILL, down for a random time in down_s, restart on the same
    port and state folder."""

    async def kill(rng: random.Random) -> None:
        server.kill9()
        await asyncio.sleep(rng.uniform(*down_s))
        await asyncio.to_thread(server.start)

    return kill


async def run_chaos(target: str, texts: dict[str, str], reference: Callable[[str], np.ndarray], kill: Kill, *,
                    kills: int, seed: int = 0, mean_chunk_bytes: int = 40, pace_s: float = 0.005,
                    tokens_of: Callable[[str], int] | None = None, window: int = 4) -> ChaosReport:
    """Stream every text through the server at `target` while `kill` strikes `kills` times. Each kill comes
    when the chunks known applied (the sum of the streams' highest acked seqs) pass a random fraction
    (5%..90%) of all chunks, plus up to 50 ms.

    A stream the client has finished is durable whatever the server's policy: `Client.stream` asks for a
    record with its last chunk. Before that, chunks acked but not yet durable survive a kill because the
    client still holds them and resends them.

    tokens_of: a text's token count in an undisturbed run (default: its UTF-8 bytes, the byte tokenizer's
    count; pass ReferenceEmbeddings.tokens for a real tokenizer). window: the client's chunks in flight.
    """
    rng = random.Random(seed)
    chunks = {sid: random_cuts(text.encode(), rng, mean_chunk_bytes) for sid, text in texts.items()}
    count = tokens_of or (lambda text: len(text.encode()))
    outcomes = {sid: StreamOutcome(len(c) + 1, bytes_sent=len(texts[sid].encode()), expected_tokens=count(texts[sid]))
                for sid, c in chunks.items()}
    total = sum(o.chunks for o in outcomes.values())
    # each stream holds back its last chunk until every kill has struck (below), so its progress stays under
    # its chunk count minus two (that chunk and the flush): every mark is reachable and no run can end before
    # the kills it scheduled (a CI run once finished in 2.4 s while a restart was still being awaited)
    marks = sorted(rng.sample(range(total // 20, min(total * 9 // 10, total - 2 * len(texts))), kills))
    all_struck = asyncio.Event()
    progress = dict.fromkeys(texts, 0)  # per stream: the highest seq known to be applied
    started = time.monotonic()

    async def killer(streams: asyncio.Future) -> int:
        done = 0
        try:
            for mark in marks:
                while sum(progress.values()) < mark and not streams.done():
                    await asyncio.sleep(0.002)
                if streams.done():  # a stream failed: gather is done early with its error
                    break
                await asyncio.sleep(rng.uniform(0.0, 0.05))  # anywhere inside a step, a write, an ack
                await kill(rng)
                done += 1
        finally:
            all_struck.set()
        return done

    # a small window: the client reads its source only as acks come, so the streams are still running (and
    # paced) after each restart instead of resending everything they have read at once
    async with AsyncClient(target, retry=RetryPolicy(timeout_s=300.0, max_backoff_s=0.5), window=window) as client:

        async def one(sid: str) -> None:
            out = outcomes[sid]

            def on_ack(ack) -> None:
                if ack.duplicate:
                    out.duplicates += 1
                else:
                    out.applied[ack.seq] += 1
                progress[sid] = max(progress[sid], ack.seq)

            async def paced():
                for i, c in enumerate(chunks[sid]):
                    if i == len(chunks[sid]) - 1:
                        await all_struck.wait()
                    yield c
                    await asyncio.sleep(pace_s)

            await client.stream(sid, paced(), on_ack=on_ack)
            # (chunks applied and made durable right before a kill get no ack: the client learns from
            # OpenStream after the restart that the server has them, and does not send them again)
            progress[sid] = out.chunks

        streams = asyncio.gather(*[one(sid) for sid in texts])
        try:
            kills_done = await killer(streams)
        except BaseException:
            streams.cancel()
            raise
        await streams
        for sid, out in outcomes.items():
            info = await client.open(sid, create_if_missing=False)
            out.applied_seq, out.tokens = info.applied_seq, info.tokens
            emb = await client.embedding_array(sid)
            ref = reference(texts[sid])
            out.rel_err = float(np.linalg.norm(emb - ref) / np.linalg.norm(ref))
    return ChaosReport(outcomes, kills_done, time.monotonic() - started)
