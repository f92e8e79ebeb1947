"""HTTP front end: requests/s for small inputs, from a second process.

    python3 bench/http_api.py stacks                 # the candidate stacks on the same small handler
    python3 bench/http_api.py serve                  # `streamret serve --http-port` end to end (random:tiny, CPU)
    python3 bench/http_api.py serve --model default --concurrency 64 --seconds 20

`stacks` runs each candidate HTTP stack in its own server process on the asyncio event loop the gRPC
server uses (so no uvloop), behind the same handler: read the JSON body of an OpenAI embeddings request,
check the bearer token, answer a 384-float embedding as JSON. `serve` starts `streamret serve` with
`--http-port 0` and posts `{"input": [one short sentence], "model": ...}` to /v1/embeddings. Both load the
server from this process with `--concurrency` keep-alive connections (aiohttp client) for `--seconds`
after one second of warm-up, and print one JSON line per case: requests/s, latency, and the server process's
CPU time per request (user + system, from /proc), which a machine shared with other work disturbs far less than
the wall-clock rate: `requests_per_cpu_s` is the rate one free core would sustain.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOKEN = "bench-token"
BODY = {"input": "The river ran north past the old mill.", "model": "bench"}

# One server per stack, each printing its port on stdout. The handler work is the same in both.
_COMMON = """
import asyncio, json, sys, numpy as np
VECTOR = (np.arange(384, dtype=np.float32) / 384).tolist()
def answer(body: bytes, auth: str | None):
    if auth != "Bearer bench-token":
        return 401, {"error": {"message": "unknown bearer token", "type": "authentication_error"}}
    request = json.loads(body)
    texts = request["input"] if isinstance(request["input"], list) else [request["input"]]
    return 200, {"object": "list", "model": request["model"],
                 "data": [{"object": "embedding", "index": i, "embedding": VECTOR} for i in range(len(texts))],
                 "usage": {"prompt_tokens": 9, "total_tokens": 9}}
"""

STACKS = {
    "aiohttp": _COMMON + """
from aiohttp import web
async def embeddings(request):
    status, out = answer(await request.read(), request.headers.get("Authorization"))
    return web.Response(status=status, body=json.dumps(out).encode(), content_type="application/json")
async def main():
    app = web.Application()
    app.router.add_post("/v1/embeddings", embeddings)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    print(site._server.sockets[0].getsockname()[1], flush=True)
    await asyncio.Event().wait()
asyncio.run(main())
""",
    "starlette+uvicorn": _COMMON + """
import socket
import uvicorn
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route
async def embeddings(request):
    status, out = answer(await request.body(), request.headers.get("authorization"))
    return Response(json.dumps(out).encode(), status_code=status, media_type="application/json")
app = Starlette(routes=[Route("/v1/embeddings", embeddings, methods=["POST"])])
sock = socket.socket(); sock.bind(("127.0.0.1", 0)); sock.listen(1024)
print(sock.getsockname()[1], flush=True)
config = uvicorn.Config(app, loop="asyncio", http=sys.argv[1], log_level="warning", access_log=False,
                        lifespan="off")
asyncio.run(uvicorn.Server(config).serve(sockets=[sock]))
""",
}


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and its threads so far (Linux /proc)."""
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def load(url: str, body: dict, concurrency: int, seconds: float, headers: dict, pid: int) -> dict:
    import aiohttp

    payload = json.dumps(body).encode()
    headers = {"Content-Type": "application/json", **headers}
    latencies: list[float] = []
    errors = 0
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        async def worker(until: float, record: bool) -> None:
            nonlocal errors
            while time.perf_counter() < until:
                t0 = time.perf_counter()
                async with session.post(url, data=payload, headers=headers) as resp:
                    await resp.read()
                    if resp.status != 200:
                        errors += 1
                if record:
                    latencies.append(time.perf_counter() - t0)

        warm = time.perf_counter() + 1.0
        await asyncio.gather(*(worker(warm, False) for _ in range(concurrency)))
        start, cpu0 = time.perf_counter(), cpu_seconds(pid)
        await asyncio.gather(*(worker(start + seconds, True) for _ in range(concurrency)))
        elapsed, cpu = time.perf_counter() - start, cpu_seconds(pid) - cpu0
    latencies.sort()
    pick = lambda q: round(1000 * latencies[min(len(latencies) - 1, int(q * len(latencies)))], 2)  # noqa: E731
    return {"requests": len(latencies), "errors": errors, "requests_per_s": round(len(latencies) / elapsed, 1),
            "p50_ms": pick(0.5), "p99_ms": pick(0.99),
            "server_cpu_ms_per_request": round(1000 * cpu / len(latencies), 3),
            "requests_per_cpu_s": round(len(latencies) / cpu, 1)}


def start(cmd: list[str], env: dict | None = None) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env)
    line = proc.stdout.readline()
    if not line:
        proc.kill()
        raise SystemExit(f"the server did not start: {cmd}")
    return proc, line


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()


def versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": sys.version.split()[0]}
    for name in ("aiohttp", "starlette", "uvicorn", "httptools", "torch"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            pass
    return out


def run_stacks(args) -> None:
    cases = [("aiohttp", ""), ("starlette+uvicorn", "httptools"), ("starlette+uvicorn", "h11")]
    for round_ in range(args.repeats):  # alternate the stacks: the machine's load drifts
        for name, parser in cases:
            proc, line = start([sys.executable, "-c", STACKS[name], parser or "-"])
            try:
                result = asyncio.run(load(f"http://127.0.0.1:{int(line)}/v1/embeddings", BODY, args.concurrency,
                                          args.seconds, {"Authorization": f"Bearer {TOKEN}"}, proc.pid))
            finally:
                stop(proc)
            label = name + (f" ({parser})" if parser else "")
            print(json.dumps({"case": label, "round": round_, "concurrency": args.concurrency, **result}), flush=True)
    print(json.dumps({"versions": versions(), "cpus": os.cpu_count(), "load": os.getloadavg()}))


def run_serve(args) -> None:
    env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
    cmd = [sys.executable, "-m", "streamret.cli", "serve", "--model", args.model, "--device", args.device,
           "--port", "0", "--http-port", "0", "--log-level", "WARNING"]
    proc, line = start(cmd, env)
    try:
        port = int(line.rsplit("http://127.0.0.1:", 1)[1].split()[0].rstrip(",/"))
        body = {"input": [BODY["input"]] * args.inputs, "model": args.model}
        for round_ in range(args.repeats):
            result = asyncio.run(load(f"http://127.0.0.1:{port}/v1/embeddings", body, args.concurrency,
                                      args.seconds, {}, proc.pid))
            print(json.dumps({"case": f"serve {args.model}", "round": round_, "inputs_per_request": args.inputs,
                              "concurrency": args.concurrency, **result}), flush=True)
    finally:
        stop(proc)
    print(json.dumps({"versions": versions(), "cpus": os.cpu_count(), "load": os.getloadavg()}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["stacks", "serve"])
    ap.add_argument("--concurrency", type=int, default=32, help="connections in flight (default 32)")
    ap.add_argument("--seconds", type=float, default=5.0, help="timed seconds per case (default 5)")
    ap.add_argument("--repeats", type=int, default=3, help="rounds (default 3)")
    ap.add_argument("--model", default="random:tiny", help="serve: MODEL spec (default random:tiny)")
    ap.add_argument("--device", default="cpu", help="serve: device (default cpu)")
    ap.add_argument("--inputs", type=int, default=1, help="serve: inputs per request (default 1)")
    args = ap.parse_args()
    (run_stacks if args.what == "stacks" else run_serve)(args)


if __name__ == "__main__":
    main()
