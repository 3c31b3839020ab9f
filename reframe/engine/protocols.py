"""The one seam between the network and everything that schedules frames around it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import torch


class FrameInterpolator(Protocol):
    """Synthesizes frames between pairs at arbitrary per-sample timesteps.

    Shapes: `img0`, `img1` are (B, 3, H, W) float32 RGB in [0, 1] on the interpolator's device;
    `timestep` is (B,) float32 with values in (0, 1), 0 meaning img0 and 1 meaning img1.
    Returns (B, 3, H, W) float32 in [0, 1]. Any H and W are accepted (padding is internal).
    """

    def interpolate(
        self, img0: torch.Tensor, img1: torch.Tensor, timestep: torch.Tensor
    ) -> torch.Tensor: ...
