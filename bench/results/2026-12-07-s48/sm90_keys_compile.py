"""Session 48: compiles the keys output kernel (_attn_outputs_kernel) for sm90 with Triton's bundled tools, no GPU,
and prints per tiling (BT, key block, BV, warps, stages, spans, segment fix): shared memory bytes, registers and
stack (spill) bytes from cuobjdump -res-usage. An argument adds the segment-fix variants. As it ran."""
import subprocess, sys, os, re, tempfile
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from streamret_kernels.chunk_retention import triton_two_pass as tp
def compile_case(kernel, consts, warps, stages, dtype="bf16", pointers=None):
    sig = {}
    for arg in kernel.arg_names:
        if arg in consts: sig[arg] = "constexpr"
        elif arg == "scale": sig[arg] = "fp32"
        elif arg in ("cu_seqlens", "seq_of_block"): sig[arg] = "*i32"
        elif arg in ("log_decay", "h0", "ht"): sig[arg] = "*fp32"
        elif arg == "seg_init" and consts.get("SEGMENT_FIX") != "product": sig[arg] = "*fp32"
        elif arg.startswith(("n_", "has_", "seg_len", "stride")): sig[arg] = "i32"
        else: sig[arg] = "*" + dtype
    attrs = {(i,): [["tt.divisibility", 16]] for i, a in enumerate(kernel.arg_names) if sig[a].startswith("*") or a.startswith("stride")}
    out = triton.compile(ASTSource(fn=kernel, signature=sig, constexprs=consts, attrs=attrs), target=GPUTarget("cuda", 90, 32),
                         options={"num_warps": warps, "num_stages": stages})
    tool = os.path.join(os.path.dirname(triton.__file__), "backends/nvidia/bin/cuobjdump")
    with tempfile.NamedTemporaryFile("wb", suffix=".cubin", delete=False) as f: f.write(out.asm["cubin"])
    r = subprocess.run([tool, "-res-usage", f.name], capture_output=True, text=True)
    r.stderr = r.stdout
    if len(sys.argv) > 2: print(r.stderr[-800:])
    regs = re.findall(r"REG:(\d+)", r.stderr); spill = re.findall(r"STACK:(\d+)", r.stderr)
    return out.metadata.shared, regs, spill
import itertools
tiles = [(128, 64, 256, 8, 2, 512), (128, 32, 256, 8, 3, 512), (128, 64, 128, 8, 3, 512), (128, 64, 128, 8, 2, 512), (64, 64, 128, 4, 3, 512), (64, 32, 256, 4, 3, 512), (128, 64, 256, 8, 2, 256), (128, 32, 256, 8, 3, 256), (128, 64, 128, 8, 3, 256)]
for bt, kb, bv, w, st, se in tiles:
    for fix in ["off"] + (["product"] if len(sys.argv) > 1 else []):
        c = dict(H=8, K=256, V=512, BT=bt, BK=256, BV=bv, NV=512 // bv, BKEY=kb, KS=64, STATE_EVERY=se, F32_STATE_DOT=False, SEGMENT_FIX=fix)
        try:
            print((bt, kb, bv, w, st, se, fix), compile_case(tp._attn_outputs_kernel, c, w, st), flush=True)
        except Exception as e:
            print((bt, kb, bv, w, st, se, fix), "FAIL", str(e)[-300:], flush=True)
