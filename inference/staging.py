"""Host staging buffers for a step's inputs: pinned on CUDA so uploads are truly asynchronous.

`non_blocking=True` from pageable memory still makes the host wait for the copy; from pinned
memory it only enqueues it. A pinned buffer must not be rewritten before the copy that reads it
has run, so `Staging.claim()` waits on the event recorded after the previous upload (in the engine
loop that copy finished long ago: the loop has already waited for the step's sampled tokens).
"""

from __future__ import annotations

import torch


class Staging:
    """Reusable host buffers of one device. Contract: call `claim()` before writing any buffer of a
    step, `upload(t)` for each host slice to send, then `uploaded()` once after the last upload."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.cuda = device.type == "cuda"
        self._event = torch.cuda.Event() if self.cuda else None
        self._pending = False

    def empty(self, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
        """A zeroed host buffer (pinned on CUDA)."""
        return torch.zeros(shape, dtype=dtype, pin_memory=self.cuda)

    def claim(self) -> None:
        if self._pending:
            self._event.synchronize()
            self._pending = False

    def upload(self, host: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """Enqueue host -> device (into `out` if given); on the CPU the host tensor itself is used."""
        if not self.cuda:
            return host if out is None else out.copy_(host)
        if out is None:
            return host.to(self.device, non_blocking=True)
        return out.copy_(host, non_blocking=True)

    def uploaded(self) -> None:
        if self.cuda:
            self._event.record()
            self._pending = True
