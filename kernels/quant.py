"""INT8 weight-only linear (W8A16) and per-token-per-head INT8 KV quantization (torch references).

Weights: symmetric per-output-channel, w ~= qweight * scale[:, None], scale = absmax(row) / 127.
The GEMM runs on the int8 values converted to the activation dtype (exact: |q| <= 127) and the
scale is applied to the (T, N) output, which is what a fused W8A16 kernel computes.
KV cache: one float32 scale per (token, head) = absmax over head_dim / 127.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class Int8Weight:
    """W8A16 weight: per-output-channel symmetric int8."""

    qweight: torch.Tensor  # (N, K) int8
    scale: torch.Tensor  # (N,) float32; w ~= qweight * scale[:, None]

    @classmethod
    def quantize(cls, w: torch.Tensor) -> Int8Weight:
        """Quantize a (N, K) floating-point weight."""
        if w.dim() != 2:
            raise ValueError(f"Int8Weight.quantize expects a 2-D (N, K) weight, got shape {tuple(w.shape)}")
        wf = w.float()
        scale = wf.abs().amax(dim=1) / 127.0  # (N,)
        safe = torch.where(scale > 0, scale, torch.ones_like(scale))
        qweight = torch.round(wf / safe[:, None]).clamp_(-127, 127).to(torch.int8)
        return cls(qweight=qweight.contiguous(), scale=scale.contiguous())

    @property
    def shape(self) -> torch.Size:
        return self.qweight.shape

    @property
    def device(self) -> torch.device:
        return self.qweight.device

    def to(self, device: torch.device | str) -> Int8Weight:
        return Int8Weight(self.qweight.to(device), self.scale.to(device))

    def dequantize(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        return (self.qweight.float() * self.scale[:, None]).to(dtype)


def linear_ref(
    x: torch.Tensor, w: torch.Tensor | Int8Weight, bias: torch.Tensor | None = None
) -> torch.Tensor:
    """x (T, K) @ w.T -> (T, N); w a (N, K) tensor or an Int8Weight."""
    if isinstance(w, Int8Weight):
        out = F.linear(x, w.qweight.to(x.dtype))
        out = (out.float() * w.scale).to(x.dtype)
        if bias is not None:
            out = out + bias
        return out
    return F.linear(x, w, bias)


def quantize_kv_ref(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """x (..., hd) -> (q int8 (..., hd), scale float32 (...)), scale = absmax / 127 per leading index."""
    xf = x.float()
    scale = xf.abs().amax(dim=-1) / 127.0
    safe = torch.where(scale > 0, scale, torch.ones_like(scale))
    q = torch.round(xf / safe[..., None]).clamp_(-127, 127).to(torch.int8)
    return q, scale
