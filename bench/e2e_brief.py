"""One line per part of `bench/e2e.py` runs, for a device call's output (after a line of the run's engine settings
that the A/B scripts vary): tokens/s, its ratio to the run's packed
forward, the engine processes' CPU a token by thread, the step loops' wait for work, a chunk's tokenize wait and
its wait from queued to applied (p50), the streams a step holds, and the service parts' ack p50 / p99.

    python3 bench/e2e_brief.py $OUT/run1 $OUT/run2      # folders holding e2e.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def lines(folder: str) -> list[str]:
    """The brief of the e2e.json in folder ([] when the run wrote none)."""
    path = Path(folder) / "e2e.json"
    if not path.exists():
        return []
    run = json.loads(path.read_text())
    parts = run["parts"]
    packed = (parts.get("packed") or {}).get("tokens_per_s")
    core_ms = (run.get("versions") or {}).get("python_core_ms")  # the host's speed (older runs lack it)
    host = f"; host python_core_ms {core_ms}" if core_ms is not None else ""
    out = [f"{Path(folder).name:8s} {settings(run.get('engine_config') or {})}{host}"]
    for name, p in parts.items():
        if not isinstance(p, dict) or "engine_cpu_us_per_token_by_thread" not in p:
            continue
        t = p["engine_cpu_us_per_token_by_thread"]
        ratio = f" ({p['tokens_per_s'] / packed:.3f})" if packed else ""
        idle = (p.get("loop_parts_ms_per_step") or {}).get("idle")
        items = p.get("engine_item_ms") or {}
        tokenize, applied = items.get("tokenize_p50"), items.get("queued_to_applied_p50")
        streams = p.get("streams_per_step")
        width = f"  streams a step {streams:.1f}" if streams is not None else ""
        if "ack_p99_ms" in p:
            width += f"  ack p50 / p99 ms {p['ack_p50_ms']} / {p['ack_p99_ms']}"
        out.append(f"{Path(folder).name:8s} {name:16s} {p['tokens_per_s'] / 1e6:5.2f} M{ratio}  engine-process us a "
                   f"token: python {t.get('python')} step {t.get('step')} tokenize_procs {t.get('tokenize_procs')}  "
                   f"idle ms a step {idle}  tokenize p50 ms {tokenize}  queued-to-applied p50 ms {applied}{width}")
    return out if len(out) > 1 else []


# the engine settings the A/B scripts vary, as bench/e2e.py records them (None: the engine's default for the device)
VARIED = (("max_step_tokens", "step tokens"), ("tokenizer_threads", "tokenize threads"),
          ("tokenize_batch_bytes", "tokenize batch bytes"), ("tokenize_join_bytes", "join bytes"),
          ("tokenize_join_wait_s", "join wait s"),
          ("tokenize_split_bursts", "split bursts"), ("overlap_steps", "overlap"), ("device_wait", "device wait"),
          ("draining_step_chunks", "draining step chunks"), ("step_whole_chunk_tokens", "whole chunk tokens"),
          ("max_sub_batches_per_engine", "sub-batches at once"),
          ("step_fill", "step fill"), ("graph_token_step", "graph token step"))


def settings(config: dict) -> str:
    """The run's varied engine settings, those it records (older runs lack some)."""
    return "settings: " + ", ".join(f"{label} {config[key]}" for key, label in VARIED if key in config)


if __name__ == "__main__":
    for folder in sys.argv[1:]:
        print("\n".join(lines(folder)))
