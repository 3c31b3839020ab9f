"""Batched RIFE inference: the `FrameInterpolator` the renderer and the Ray actors call.

Load once, then call `interpolate` with (B, 3, H, W) pairs and (B,) timesteps; several
timesteps of one pair, or many pairs, go through one forward pass (split at `max_batch`).
Padding to the network's unit and cropping back happen here, so any H and W work.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from reframe.engine.ifnet import IFNet, padding_unit, scale_list
from reframe.engine.weights import RIFE_426, load_state_dict
from reframe.errors import InvalidInput
from reframe.sched import available_cpus

Precision = Literal["fp32", "bf16", "fp16"]
_DTYPES: dict[str, torch.dtype] = {
    "fp32": torch.float32,
    "bf16": torch.bfloat16,
    "fp16": torch.float16,
}
# Scales the network was trained around; others change the padding unit to a non-integer.
SUPPORTED_SCALES = (0.25, 0.5, 1.0, 2.0)
# Up to this many pixels (1080p, 2K DCI, 1920x1200) the full-resolution scale is used.
_FULL_SCALE_MAX_PIXELS = 2048 * 1200


def default_scale(width: int, height: int) -> float:
    """1.0 up to 1080p-class sizes, 0.5 above (1440p, 4K): flows grow with resolution."""
    return 1.0 if width * height <= _FULL_SCALE_MAX_PIXELS else 0.5


MIB = 1024 * 1024
# Peak memory of a CPU process running the network in fp32, measured with getrusage at
# 360p/720p/1080p/2160p and 1-3 frames per forward pass (bench/memory.py): torch and the model
# take ~450 MiB, and each frame in a forward pass adds ~700 bytes per padded pixel at scale 1.0
# (~650 MiB at 720p). The activations are the intermediate flows, masks and features of the
# five blocks at full resolution; at scale 0.5 they are about half as large.
CPU_BASE_BYTES = 450 * MIB
CPU_BYTES_PER_PIXEL = 700
# What the forward passes of one CPU process may use beyond its base. Batching more frames per
# pass does not make the CPU faster (memory-bound: bench/memory.py measures it side by side),
# so the pass is kept to what fits: 2 frames at 720p, 1 at 1080p and 4K.
CPU_FORWARD_BUDGET_BYTES = 1536 * MIB
# On a GPU the whole render-core batch goes through at once: VRAM per resolution is measured by
# bench/gpu/run.sh.
GPU_MAX_BATCH = 8


def padded_pixels(width: int, height: int, scale: float) -> int:
    unit = padding_unit(scale)
    return (-(-width // unit) * unit) * (-(-height // unit) * unit)


def forward_bytes_per_frame(width: int, height: int, scale: float | None = None) -> int:
    """CPU memory one frame adds to a forward pass at this size (see CPU_BYTES_PER_PIXEL)."""
    s = scale if scale is not None else default_scale(width, height)
    return int(CPU_BYTES_PER_PIXEL * min(1.0, s) * padded_pixels(width, height, s))


def default_max_batch(width: int, height: int, device: str, scale: float | None = None) -> int:
    """Frames per forward pass: as many as fit CPU_FORWARD_BUDGET_BYTES on CPU (1 to 8)."""
    if torch.device(device).type != "cpu":
        return GPU_MAX_BATCH
    per_frame = forward_bytes_per_frame(width, height, scale)
    return max(1, min(GPU_MAX_BATCH, CPU_FORWARD_BUDGET_BYTES // max(1, per_frame)))


def cpu_peak_bytes(width: int, height: int, scale: float | None = None) -> int:
    """What a CPU process interpolating at this size peaks at, with the default batch."""
    batch = default_max_batch(width, height, "cpu", scale)
    return CPU_BASE_BYTES + batch * forward_bytes_per_frame(width, height, scale)


class Interpolator:
    """RIFE 4.26 on one device. Satisfies `reframe.engine.protocols.FrameInterpolator`.

    `precision` selects the convolution dtype; flows, masks and warping stay float32 in every
    mode. bf16 suits CPUs with AVX-512 BF16/AMX and GPUs; fp16 is GPU-only.
    `threads` (CPU) defaults to the cores this process may use. `max_batch` (frames per
    forward pass) defaults to what fits in memory at each size (`default_max_batch`).
    """

    def __init__(
        self,
        weights: Path,
        *,
        device: str = "cpu",
        scale: float | None = None,
        precision: Precision = "fp32",
        threads: int | None = None,
        max_batch: int | None = None,
        sha256: str | None = RIFE_426.sha256,
    ) -> None:
        # Validate before the (slower) load so a bad option fails fast.
        self._configure(device, scale, precision, threads, max_batch)
        net = IFNet.from_state_dict(load_state_dict(Path(weights), sha256=sha256))
        self.net = self._prepare(net)

    @classmethod
    def from_network(
        cls,
        net: IFNet,
        *,
        device: str = "cpu",
        scale: float | None = None,
        precision: Precision = "fp32",
        threads: int | None = None,
        max_batch: int | None = None,
    ) -> Interpolator:
        """An interpolator around an already built network (tests, benchmarks); `net` is
        copied, so the caller's module keeps its dtype."""
        self = cls.__new__(cls)
        self._configure(device, scale, precision, threads, max_batch)
        self.net = self._prepare(copy.deepcopy(net))
        return self

    def _configure(
        self,
        device: str,
        scale: float | None,
        precision: Precision,
        threads: int | None,
        max_batch: int | None,
    ) -> None:
        if precision not in _DTYPES:
            raise InvalidInput(f"precision must be one of {sorted(_DTYPES)}, got {precision!r}")
        if scale is not None and scale not in SUPPORTED_SCALES:
            raise InvalidInput(f"scale must be one of {SUPPORTED_SCALES}, got {scale}")
        if max_batch is not None and max_batch < 1:
            raise InvalidInput(f"max_batch must be at least 1, got {max_batch}")
        self.device = torch.device(device)
        if self.device.type == "cpu" and precision == "fp16":
            raise InvalidInput("fp16 is for GPUs; on CPU use precision 'fp32' or 'bf16'")
        if self.device.type == "cpu" and precision == "bf16" and not _cpu_has_bf16():
            raise InvalidInput(
                "this CPU has no native bf16 (AVX-512 BF16 or AMX); use precision 'fp32'"
            )
        if precision != "fp32" and scale is not None and scale > 1:
            raise InvalidInput("reduced precision supports scale <= 1; use fp32 for scale 2")
        self.scale = scale
        self.precision: Precision = precision
        self.max_batch = max_batch
        self.threads = threads if threads is not None else available_cpus()
        if self.threads < 1:
            raise InvalidInput(f"threads must be at least 1, got {threads}")
        self._apply_threads()

    def _prepare(self, net: IFNet) -> IFNet:
        # Fold in fp32, before any cast, so the reduced-precision weights round only once.
        net = net.fold_residual_gains().to(self.device, dtype=_DTYPES[self.precision]).eval()
        for p in net.parameters():
            p.requires_grad_(False)
        if self.device.type == "cpu":
            # NHWC lets oneDNN pick its fast kernels for the narrow convolutions: measured
            # 0.70 s vs 0.84 s per 1280x768 pair in fp32 on this project's 2-core CI machine,
            # same output (bench/speed.py, "fast fp32 NHWC").
            net.use_channels_last()
        return net

    def _apply_threads(self) -> None:
        # torch's intra-op pool is per process; setting it from the instance (not at import)
        # keeps Ray actors that share a node from oversubscribing their cores.
        if self.device.type == "cpu" and torch.get_num_threads() != self.threads:
            torch.set_num_threads(self.threads)

    def scale_for(self, width: int, height: int) -> float:
        return self.scale if self.scale is not None else default_scale(width, height)

    def interpolate(
        self,
        img0: Tensor,
        img1: Tensor,
        timestep: Tensor,
        *,
        pair_index: Tensor | None = None,
    ) -> Tensor:
        """(B, 3, H, W) float in [0, 1] x2 and (B,) t in (0, 1) -> (B, 3, H, W) in [0, 1].

        With `pair_index` (B,), `img0`/`img1` hold P distinct pairs and sample k uses pair
        `pair_index[k]` (each frame is then encoded once for all its timesteps).
        """
        if img0.shape != img1.shape or img0.dim() != 4 or img0.shape[1] != 3:
            raise InvalidInput(
                f"img0 and img1 must both be (B, 3, H, W); got {tuple(img0.shape)} and "
                f"{tuple(img1.shape)}"
            )
        b = img0.shape[0] if pair_index is None else pair_index.shape[0]
        if timestep.shape != (b,):
            raise InvalidInput(f"timestep must have shape ({b},), got {tuple(timestep.shape)}")
        h, w = img0.shape[-2:]
        scale = self.scale_for(w, h)
        unit = padding_unit(scale)
        pad_h, pad_w = (-h) % unit, (-w) % unit
        self._apply_threads()
        outputs = []
        with torch.inference_mode():
            x0 = img0.to(self.device, torch.float32)
            x1 = img1.to(self.device, torch.float32)
            if pad_h or pad_w:
                # Edge replication rather than zeros: a black band makes the flow estimator see
                # a hard edge that is not in the picture. Measured on bigbuckbunny's 49-frame
                # drop test (720p padded to 768): 35.108 dB vs 35.094 dB with zeros.
                x0 = F.pad(x0, (0, pad_w, 0, pad_h), mode="replicate")
                x1 = F.pad(x1, (0, pad_w, 0, pad_h), mode="replicate")
            ts = timestep.to(self.device, torch.float32)
            scales = scale_list(scale)
            step = self.max_batch or default_max_batch(w, h, self.device.type, scale)
            for start in range(0, b, step):
                stop = min(b, start + step)
                if pair_index is None:
                    out = self.net(x0[start:stop], x1[start:stop], ts[start:stop], scales)
                else:
                    idx = pair_index[start:stop].to(self.device)
                    used, local = torch.unique(idx, return_inverse=True)
                    out = self.net(x0[used], x1[used], ts[start:stop], scales, local)
                outputs.append(out[:, :, :h, :w].clamp_(0.0, 1.0))
        return torch.cat(outputs, 0) if len(outputs) > 1 else outputs[0]

    def interpolate_uint8(
        self, frame0: np.ndarray, frame1: np.ndarray, timesteps: Sequence[float]
    ) -> list[np.ndarray]:
        """(H, W, 3) uint8 RGB frames and k timesteps -> k (H, W, 3) uint8 RGB frames."""
        if frame0.shape != frame1.shape or frame0.ndim != 3 or frame0.shape[2] != 3:
            raise InvalidInput(
                f"frames must both be (H, W, 3) uint8 RGB; got {frame0.shape} and {frame1.shape}"
            )
        if not timesteps:
            return []
        pair = torch.from_numpy(np.stack([frame0, frame1])).permute(0, 3, 1, 2)
        pair = pair.to(self.device, torch.float32).div_(255.0)
        ts = torch.tensor(list(timesteps), dtype=torch.float32)
        index = torch.zeros(len(ts), dtype=torch.long)
        out = self.interpolate(pair[:1], pair[1:], ts, pair_index=index)
        rgb = out.mul(255.0).round_().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
        return [np.ascontiguousarray(frame) for frame in rgb]


def _cpu_has_bf16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return any(f in flags for f in (" avx512_bf16", " amx_bf16"))
