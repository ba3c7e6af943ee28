"""Where int8_ws.x16_linear's time went (issue 5, 2026-12-07; removed after this run): cuBLAS bf16, the planes kernel +
GEMM, x16_linear, x16 with its converter only passing tiles on, x16 with the weights only (diag 1/2: timing only).

    python benchmarks/int8_x16_diag.py   (H100/H200)
"""

import sys

import torch

sys.path.insert(0, ".")
from benchmarks.kernels import GLM_LINEARS, copies_for, graph_ms
from kernels import int8_ws
from kernels.quant import Int8Weight

rows_out = []
for name in ("o_proj", "down"):
    N, K = GLM_LINEARS[name]
    iws = [
        Int8Weight.quantize(torch.randn(N, K, dtype=torch.bfloat16, device="cuda") * 0.02)
        for _ in range(copies_for(N * K))
    ]
    ws = [iw.dequantize(torch.bfloat16) for iw in iws[:2]]
    for M in (8, 32):
        x = torch.randn(M, K, dtype=torch.bfloat16, device="cuda")
        y = torch.empty(M, N, dtype=torch.bfloat16, device="cuda")
        r = [name, M]
        r.append(graph_ms([lambda w=w: torch.matmul(x, w.T) for w in ws * (len(iws) // 2)]) * 1e3)
        r.append(
            graph_ms([lambda iw=iw: int8_ws.ws_linear(x, iw.qweight, iw.scale, None, y) for iw in iws]) * 1e3
        )
        for d in (0, 1, 2):
            r.append(
                graph_ms(
                    [
                        lambda iw=iw, d=d: int8_ws.x16_linear(x, iw.qweight, iw.scale, None, y, diag=d)
                        for iw in iws
                    ]
                )
                * 1e3
            )
        print(r, flush=True)
        rows_out.append(r)
print(
    "| layer | rows | cuBLAS bf16 | planes kernel + GEMM | x16 | x16 converter passes tiles on | x16 weights only |"
)
print("|---|---|---|---|---|---|---|")
for r in rows_out:
    print("| " + " | ".join(str(v) if not isinstance(v, float) else f"{v:.1f}" for v in r) + " |")
