"""RMSNorm, optionally fused with the residual add and a preceding RMSNorm (torch reference).

Math (Zhang & Sennrich 2019): y = x / sqrt(mean(x^2) + eps) * weight, with the mean and the
rsqrt in float32 and the result cast back to the input dtype before the weight multiply, exactly
as transformers' GlmRMSNorm does (so float32 results match it bit for bit).
"""

from __future__ import annotations

import torch


def rms_norm_ref(
    x: torch.Tensor,
    weight: torch.Tensor,
    eps: float,
    residual: torch.Tensor | None = None,
    pre_weight: torch.Tensor | None = None,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """x (T, H). Without residual: norm(x) * weight. With residual: h = x + residual, (norm(h) * weight, h).
    pre_weight: x is first replaced by norm(x) * pre_weight (GLM-4's post-attention / post-MLP norm, whose
    output goes straight into the residual add and the next norm)."""
    if pre_weight is not None:
        x = rms_norm_ref(x, pre_weight, eps)
    if residual is not None:
        x = x + residual
    xf = x.float()
    y = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)
    out = (weight * y.to(x.dtype)).to(x.dtype)
    return out if residual is None else (out, x)
