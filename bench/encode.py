"""Engine.encode throughput: texts/s and tokens/s for many short texts and for a few long ones.

    python3 bench/encode.py                     # default model, cuda if present
    python3 bench/encode.py --model random:tiny --device cpu --n 2000 --long 0

Each case runs once to warm up, then is timed. `--serial-close` closes each temporary stream on the
batch runner's thread (how embed_table closed them before the close pool), to compare the two.
"""

from __future__ import annotations

import argparse
import json
import random
import time


def texts(n: int, words: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    vocab = ("river stone light market harbour grain winter city people uphill flood boat north spring "
             "engine stream state summary document chapter reader").split()
    return [" ".join(rng.choice(vocab) for _ in range(rng.randint(words // 2, words))) + "." for _ in range(n)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="default")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--n", type=int, default=20000, help="short texts (default 20000)")
    ap.add_argument("--long", type=int, default=64, help="long texts of ~20000 words each (default 64; 0: none)")
    ap.add_argument("--serial-close", action="store_true")
    args = ap.parse_args()

    import torch

    from streamret.batch import runner
    from streamret.engine import Engine

    if args.serial_close:
        def close_here(self, doc):
            if doc.opened:
                doc.opened = False
                del self.opened[doc.stream_id]
                self._close_now(doc.stream_id)
        runner._Runner._close = close_here

    cases = [("short", texts(args.n, 24, 0), [64, 256, 1024])]
    if args.long:
        cases.append(("long", texts(args.long, 20000, 1), [64]))
    with Engine.from_model(args.model, device=args.device) as engine:
        device = str(engine.model.device)
        for name, data, sizes in cases:
            for batch_size in sizes:
                engine.encode(data[: min(len(data), max(batch_size, 256))], batch_size=batch_size)  # warm-up
                if engine.model.device.type == "cuda":
                    torch.cuda.synchronize()
                tokens0, steps0 = engine.stats()["tokens_processed"], engine.stats()["steps"]
                t0 = time.perf_counter()
                engine.encode(data, batch_size=batch_size)
                dt = time.perf_counter() - t0
                stats = engine.stats()
                tokens = stats["tokens_processed"] - tokens0
                print(json.dumps(dict(case=name, texts=len(data), batch_size=batch_size, seconds=round(dt, 3),
                                      texts_per_s=round(len(data) / dt, 1), tokens_per_s=round(tokens / dt),
                                      steps=stats["steps"] - steps0, serial_close=args.serial_close,
                                      device=device, model=args.model, torch=torch.__version__)), flush=True)


if __name__ == "__main__":
    main()
