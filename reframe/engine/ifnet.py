"""RIFE 4.26's IFNet, written for inference in this repository.

Architecture (Huang et al., "Real-Time Intermediate Flow Estimation for Video Frame
Interpolation", ECCV 2022; the 4.26 weights are from the Practical-RIFE series, MIT):

* `encode`: a small feature encoder, 3 -> 16 channels at half resolution, back to full
  resolution with a transposed conv that ends in `feature_channels` (4 in 4.26).
* `block0..block4`: IFBlocks at decreasing scale (16, 8, 4, 2, 1 divided by the user scale).
  Each downsamples its input by its scale, applies two stride-2 convs, eight residual convs with
  a learnable per-channel gain, and a transposed conv + PixelShuffle head producing 4 flow
  channels (t->0 and t->1), 1 fusion-mask logit and features carried to the next block.
* Output: `warp(img0) * sigmoid(mask) + warp(img1) * (1 - sigmoid(mask))`.

Two forwards compute the same function:

* `forward_reference` is the straightforward formulation: every block receives full-resolution
  concatenations and its outputs are upsampled back to full resolution. It is the yardstick.
* `forward` restructures the glue around the convolutions. Bilinear resizing is linear and
  per-channel, so downsampling a concatenation equals concatenating downsampled parts, and
  downsampling a bilinear upsample of a coarser block output equals one direct resize (the
  sample points never straddle a knot). Those two rewrites are exact. The one approximation is
  warping at the block's resolution: the reference averages four warped full-resolution pixels
  around each low-resolution sample; `forward` takes one bilinear sample of a 2x2 box-filtered
  source at the centre, which is identical wherever the flow is constant over those four
  pixels. Convolutions may run in a reduced precision (the module's dtype) while flows, masks
  and warping always stay in float32, because flows of hundreds of pixels do not survive bf16.

Shapes: images (B, 3, H, W) float32 in [0, 1], H and W multiples of the padding unit
(`padding_unit(scale)`); timestep (B,) float32.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from reframe.errors import WeightsError

# Flow (2 per direction), one mask logit, then carried features: the head's channel layout.
_FLOW = 4
_MASK = 1
BASE_SCALES = (16.0, 8.0, 4.0, 2.0, 1.0)
_NEG_SLOPE = 0.2

# Keys present in the published checkpoint that only training uses.
TRAINING_ONLY_PREFIXES = ("teacher.", "caltime.")


@dataclass(frozen=True)
class IFNetConfig:
    """Channel counts of an IFNet; `from_state_dict` reads them off a checkpoint."""

    encoder_channels: int = 16
    feature_channels: int = 4
    block_channels: tuple[int, ...] = (192, 128, 96, 64, 32)
    head_channels: int = 13  # flow + mask + carried features, after PixelShuffle(2)
    residual_convs: int = 8

    @property
    def carried_channels(self) -> int:
        return self.head_channels - _FLOW - _MASK

    @property
    def first_block_inputs(self) -> int:
        # img0, img1, their features, and the timestep plane.
        return 3 + 3 + 2 * self.feature_channels + 1

    @property
    def later_block_inputs(self) -> int:
        # warped images and features, timestep, previous mask, carried features, then the flow.
        return self.first_block_inputs + _MASK + self.carried_channels + _FLOW


def _conv_act(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1), nn.LeakyReLU(_NEG_SLOPE, inplace=True))


class Encoder(nn.Module):
    """Per-frame features at full resolution (state dict prefix `encode.`)."""

    def __init__(self, channels: int, out_channels: int) -> None:
        super().__init__()
        self.cnn0 = nn.Conv2d(3, channels, 3, 2, 1)
        self.cnn1 = nn.Conv2d(channels, channels, 3, 1, 1)
        self.cnn2 = nn.Conv2d(channels, channels, 3, 1, 1)
        self.cnn3 = nn.ConvTranspose2d(channels, out_channels, 4, 2, 1)

    def forward(self, x: Tensor) -> Tensor:
        x = F.leaky_relu_(self.cnn0(x), _NEG_SLOPE)
        x = F.leaky_relu_(self.cnn1(x), _NEG_SLOPE)
        x = F.leaky_relu_(self.cnn2(x), _NEG_SLOPE)
        out: Tensor = self.cnn3(x)
        return out


class ResConv(nn.Module):
    """`leaky_relu(conv(x) * beta + x)` with a learnable per-channel gain."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, 1, 1)
        self.beta = nn.Parameter(torch.ones(1, channels, 1, 1))
        self.gain_folded = False

    def fold_gain(self) -> None:
        """Move `beta` into the conv (one memory pass less per layer); same function."""
        if self.gain_folded:
            return
        with torch.no_grad():
            gain = self.beta.detach().reshape(-1)
            self.conv.weight.mul_(gain.view(-1, 1, 1, 1).to(self.conv.weight.dtype))
            assert self.conv.bias is not None
            self.conv.bias.mul_(gain.to(self.conv.bias.dtype))
            self.beta.fill_(1.0)
        self.gain_folded = True

    def forward(self, x: Tensor) -> Tensor:
        y = self.conv(x)
        if not self.gain_folded:
            y = y.mul_(self.beta)
        return F.leaky_relu_(y.add_(x), _NEG_SLOPE)


class IFBlock(nn.Module):
    """One coarse-to-fine stage. `core` maps an input already at the block's resolution to
    the head output (B, head_channels, h, w) at that same resolution."""

    def __init__(self, in_channels: int, channels: int, head_channels: int, depth: int) -> None:
        super().__init__()
        self.conv0 = nn.Sequential(
            _conv_act(in_channels, channels // 2, 2), _conv_act(channels // 2, channels, 2)
        )
        self.convblock = nn.Sequential(*(ResConv(channels) for _ in range(depth)))
        self.lastconv = nn.Sequential(
            nn.ConvTranspose2d(channels, 4 * head_channels, 4, 2, 1), nn.PixelShuffle(2)
        )

    def core(self, x: Tensor) -> Tensor:
        out: Tensor = self.lastconv(self.convblock(self.conv0(x)))
        return out


def warp(source: Tensor, flow: Tensor) -> Tensor:
    """Backward warp: output(p) = source(p + flow(p)), bilinear, borders clamped.

    `flow` is (B, 2, h, w) in pixels of `source`; the output is (B, C, h, w). When h, w differ
    from the source size the sample grid is placed at the output pixel centres expressed in
    source pixels, which is how `forward` warps at a block's resolution.
    """
    b, _, h, w = flow.shape
    src_h, src_w = source.shape[-2:]
    # Output pixel centres in source pixel coordinates (identity when the sizes match).
    xs = (torch.arange(w, device=flow.device, dtype=torch.float32) + 0.5) * (src_w / w) - 0.5
    ys = (torch.arange(h, device=flow.device, dtype=torch.float32) + 0.5) * (src_h / h) - 0.5
    # align_corners=True: -1 and 1 are the centres of the first and last source pixels.
    gx = (xs.view(1, 1, w) + flow[:, 0]) * (2.0 / (src_w - 1)) - 1.0
    gy = (ys.view(1, h, 1) + flow[:, 1]) * (2.0 / (src_h - 1)) - 1.0
    grid = torch.stack((gx, gy), dim=-1)
    return F.grid_sample(
        source, grid, mode="bilinear", padding_mode="border", align_corners=True
    ).view(b, source.shape[1], h, w)


def _resize(x: Tensor, size: tuple[int, int]) -> Tensor:
    if tuple(x.shape[-2:]) == size:
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def scale_list(scale: float, blocks: int = 5) -> list[float]:
    """Per-block downsampling factors for a user scale (1.0 at 1080p, 0.5 at 4K)."""
    return [s / scale for s in BASE_SCALES[-blocks:]]


def padding_unit(scale: float) -> int:
    """Height and width must be multiples of this for `scale` (64 at 1.0, 128 at 0.5)."""
    unit = 64 / scale
    if unit != int(unit) or unit < 1:
        raise ValueError(f"scale {scale} does not give an integer padding unit (64 / scale)")
    return int(unit)


class IFNet(nn.Module):
    """RIFE 4.26 flow network. Parameter names match the published state dict."""

    def __init__(self, config: IFNetConfig | None = None) -> None:
        super().__init__()
        cfg = config or IFNetConfig()
        self.config = cfg
        self.channels_last = False
        self.encode = Encoder(cfg.encoder_channels, cfg.feature_channels)
        for i, c in enumerate(cfg.block_channels):
            cin = cfg.first_block_inputs if i == 0 else cfg.later_block_inputs
            self.add_module(f"block{i}", IFBlock(cin, c, cfg.head_channels, cfg.residual_convs))

    @property
    def blocks(self) -> list[IFBlock]:
        return [
            cast(IFBlock, getattr(self, f"block{i}"))
            for i in range(len(self.config.block_channels))
        ]

    def fold_residual_gains(self) -> IFNet:
        """Inference-only rewrite; the state dict no longer matches the checkpoint after it."""
        for module in self.modules():
            if isinstance(module, ResConv):
                module.fold_gain()
        return self

    def use_channels_last(self, enabled: bool = True) -> IFNet:
        """NHWC convolutions in `forward`: oneDNN's fast kernels for narrow layers want it."""
        fmt = torch.channels_last if enabled else torch.contiguous_format
        with torch.no_grad():
            for param in self.parameters():
                if param.dim() == 4:
                    param.data = param.data.contiguous(memory_format=fmt)
        self.channels_last = enabled
        return self

    def _conv_input(self, x: Tensor) -> Tensor:
        x = x.to(self.conv_dtype)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    @property
    def conv_dtype(self) -> torch.dtype:
        return self.encode.cnn0.weight.dtype

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_state_dict(cls, state: Mapping[str, Tensor]) -> IFNet:
        """Build a network shaped like `state` and load it strictly.

        Only the training-time `teacher.*` and `caltime.*` entries may be left over; any other
        missing or unexpected key, or a shape that does not fit, is a WeightsError.
        """
        config = config_from_state_dict(state)
        net = cls(config)
        usable = {k: v for k, v in state.items() if not k.startswith(TRAINING_ONLY_PREFIXES)}
        try:
            result = net.load_state_dict(usable, strict=False)
        except RuntimeError as exc:  # shape mismatches
            raise WeightsError(
                f"the RIFE weights do not fit the network: {str(exc).splitlines()[-1].strip()}"
            ) from exc
        if result.missing_keys or result.unexpected_keys:
            raise WeightsError(
                "the RIFE weights do not match the network: "
                f"missing {sorted(result.missing_keys)[:8]}, "
                f"unexpected {sorted(result.unexpected_keys)[:8]}; "
                "re-download them with `reframe models pull --force`"
            )
        return net.eval()

    # ------------------------------------------------------------------ reference
    def forward_reference(
        self, img0: Tensor, img1: Tensor, timestep: Tensor, scales: Sequence[float]
    ) -> Tensor:
        """Straightforward formulation: full-resolution concatenations into every block."""
        b, _, h, w = img0.shape
        t = timestep.view(b, 1, 1, 1).expand(b, 1, h, w).to(img0.dtype)
        f0 = self.encode(img0)
        f1 = self.encode(img1)
        flow = mask = feat = None
        warped0, warped1 = img0, img1
        for block, s in zip(self.blocks, scales, strict=True):
            if flow is None:
                x = torch.cat((img0, img1, f0, f1, t), 1)
            else:
                assert mask is not None
                assert feat is not None
                wf0 = warp(f0, flow[:, :2])
                wf1 = warp(f1, flow[:, 2:4])
                x = torch.cat((warped0, warped1, wf0, wf1, t, mask, feat), 1)
            x = F.interpolate(x, scale_factor=1.0 / s, mode="bilinear", align_corners=False)
            if flow is not None:
                small = F.interpolate(
                    flow, scale_factor=1.0 / s, mode="bilinear", align_corners=False
                )
                x = torch.cat((x, small / s), 1)
            tmp = block.core(x)
            tmp = F.interpolate(tmp, scale_factor=s, mode="bilinear", align_corners=False)
            delta = tmp[:, :_FLOW] * s
            flow = delta if flow is None else flow + delta
            mask = tmp[:, _FLOW : _FLOW + _MASK]
            feat = tmp[:, _FLOW + _MASK :]
            warped0 = warp(img0, flow[:, :2])
            warped1 = warp(img1, flow[:, 2:4])
        assert mask is not None
        m = torch.sigmoid(mask)
        return warped0 * m + warped1 * (1 - m)

    # ------------------------------------------------------------------ fast
    @staticmethod
    def supports_fast(scales: Sequence[float]) -> bool:
        """The restructured forward needs power-of-two factors with 1 only at the last block."""

        def pow2(s: float) -> bool:
            return s >= 1 and s == int(s) and (int(s) & (int(s) - 1)) == 0

        return all(pow2(s) for s in scales) and all(s >= 2 for s in scales[:-1])

    def forward(
        self,
        img0: Tensor,
        img1: Tensor,
        timestep: Tensor,
        scales: Sequence[float],
        pair_index: Tensor | None = None,
    ) -> Tensor:
        """Restructured forward (see the module docstring); same contract as the reference.

        `pair_index` (B,) lets several timesteps share one pair: `img0`/`img1` then hold the
        P distinct pairs and sample k uses pair `pair_index[k]`, so each frame is encoded once.
        """
        if not self.supports_fast(scales):
            if self.conv_dtype != torch.float32:
                raise ValueError(
                    f"reduced precision needs power-of-two block scales, got {list(scales)}"
                )
            if pair_index is not None:
                img0, img1 = img0[pair_index], img1[pair_index]
            return self.forward_reference(img0, img1, timestep, scales)

        p, _, h, w = img0.shape
        full = (h, w)
        frames = torch.cat((img0, img1), 0)  # (2P, 3, H, W): every first frame, then seconds
        # One encoder pass over both frames of every distinct pair.
        feats = self.encode(self._conv_input(frames)).float()
        srcs = torch.cat((frames, feats), 1)  # (2P, 3 + F, H, W): image and features
        if pair_index is not None:
            both = torch.cat((pair_index, pair_index + p))
            srcs, frames = srcs[both], frames[both]
        b = srcs.shape[0] // 2
        t_col = timestep.view(b, 1, 1, 1).float()
        box: Tensor | None = None  # 2x2 box-filtered sources for warps at block resolution
        deltas: list[Tensor] = []  # each block's flow delta (in full-res pixels) at its size
        rest: Tensor | None = None  # the previous block's mask logit and carried features
        flow_full: Tensor | None = None
        for i, (block, s) in enumerate(zip(self.blocks, scales, strict=True)):
            size = (int(h // s), int(w // s))
            if i == 0:
                x = self._assemble(_resize_down(srcs, s), t_col, None, None, size)
            elif s == 1:
                assert rest is not None
                flow_full = self._sum_flows(deltas, full)
                warped = _warp_both(srcs, flow_full, full, 0.0)
                x = self._assemble(warped, t_col, _resize(rest, full), flow_full, size)
            else:
                assert rest is not None
                if box is None:
                    box = _box2(srcs)
                flow_here = self._sum_flows(deltas, size)
                warped = _warp_both(box, flow_here, full, -0.5)
                x = self._assemble(warped, t_col, _resize(rest, size), flow_here / s, size)
            tmp = block.core(self._conv_input(x)).float()
            deltas.append(tmp[:, :_FLOW] * s)
            rest = tmp[:, _FLOW:]

        assert rest is not None
        if flow_full is not None and deltas[-1].shape[-2:] == full:
            flow = flow_full + deltas[-1]
        else:
            flow = self._sum_flows(deltas, full)
        m = torch.sigmoid(_resize(rest[:, :_MASK], full))
        out = _warp_both(frames, flow, full, 0.0)
        return torch.lerp(out[b:], out[:b], m)

    @staticmethod
    def _sum_flows(deltas: list[Tensor], size: tuple[int, int]) -> Tensor:
        # Resizing each delta directly to `size` equals the reference's upsample-to-full then
        # downsample (see module docstring); summing resized deltas keeps it exact.
        total = _resize(deltas[0], size)
        for d in deltas[1:]:
            total = total + _resize(d, size)
        return total

    @staticmethod
    def _assemble(
        warped: Tensor,
        t_col: Tensor,
        carried: Tensor | None,
        flow: Tensor | None,
        size: tuple[int, int],
    ) -> Tensor:
        """Block input in the channel order the weights expect from (2B, 3 + F, h, w) sources:
        img0, img1, f0, f1, t [, mask, feat, flow]."""
        b = warped.shape[0] // 2
        s0, s1 = warped[:b], warped[b:]
        pieces = [s0[:, :3], s1[:, :3], s0[:, 3:], s1[:, 3:], t_col.expand(b, 1, *size)]
        if carried is not None and flow is not None:
            pieces += [carried, flow]
        return torch.cat(pieces, 1)


def _warp_both(sources: Tensor, flow: Tensor, full: tuple[int, int], shift: float) -> Tensor:
    """Warp (2B, C, Hs, Ws) sources, first frames by flow[:, :2] and second frames by
    flow[:, 2:4], in one grid_sample.

    `flow` is (B, 4, h, w) in full-resolution pixels; output pixel centres are placed in
    full-resolution coordinates and moved by `shift` into the sources' own coordinates (-0.5
    for the box-filtered sources, whose sample j stands for position j + 0.5).
    """
    b, _, h, w = flow.shape
    src_h, src_w = sources.shape[-2:]
    kx, ky = 2.0 / (src_w - 1), 2.0 / (src_h - 1)
    xs = ((torch.arange(w, device=flow.device) + 0.5) * (full[1] / w) - 0.5 + shift) * kx - 1
    ys = ((torch.arange(h, device=flow.device) + 0.5) * (full[0] / h) - 0.5 + shift) * ky - 1
    base = torch.stack((xs.view(1, w).expand(h, w), ys.view(h, 1).expand(h, w)), dim=-1)
    per_dir = flow.view(b, 2, 2, h, w).permute(1, 0, 3, 4, 2)  # (dir, B, h, w, xy)
    # Filled on the device rather than copied from a host list: a host-to-device copy waits
    # for the stream, which is not allowed while a CUDA graph is being captured.
    scale = torch.full((2,), kx, device=flow.device, dtype=flow.dtype)
    scale[1] = ky
    # Written into a contiguous buffer: the permuted flow would otherwise set the layout.
    grid = torch.empty(2, b, h, w, 2, device=flow.device, dtype=flow.dtype)
    torch.addcmul(base, per_dir, scale, out=grid)
    grid = grid.view(2 * b, h, w, 2)
    return F.grid_sample(sources, grid, mode="bilinear", padding_mode="border", align_corners=True)


def _box2(x: Tensor) -> Tensor:
    """Mean of every 2x2 neighbourhood, (H-1, W-1); sample j stands for position j + 0.5.
    Written as separable adds: much faster than a stride-1 avg_pool2d on CPU."""
    rows = x[..., :-1, :] + x[..., 1:, :]
    return (rows[..., :-1] + rows[..., 1:]).mul_(0.25)


def _resize_down(x: Tensor, s: float) -> Tensor:
    # Same op as the reference's scale_factor resize, so the first block is exact.
    return F.interpolate(x, scale_factor=1.0 / s, mode="bilinear", align_corners=False)


def config_from_state_dict(state: Mapping[str, Tensor]) -> IFNetConfig:
    """Read channel counts from tensor shapes; refuse a checkpoint that is not an IFNet."""
    try:
        enc = state["encode.cnn0.weight"].shape[0]
        feat = state["encode.cnn3.weight"].shape[1]
        widths: list[int] = []
        while f"block{len(widths)}.conv0.1.0.weight" in state:
            widths.append(state[f"block{len(widths)}.conv0.1.0.weight"].shape[0])
        head = state["block0.lastconv.0.weight"].shape[1] // 4
        depth = 0
        while f"block0.convblock.{depth}.conv.weight" in state:
            depth += 1
    except KeyError as exc:
        raise WeightsError(
            f"the file is not a RIFE IFNet state dict (no {exc.args[0]!r}); "
            "re-download it with `reframe models pull --force`"
        ) from None
    if len(widths) != len(BASE_SCALES) or depth == 0:
        raise WeightsError(
            f"expected {len(BASE_SCALES)} IFBlocks with residual convs, found {len(widths)} "
            f"blocks and {depth} residual convs: these are not RIFE 4.2x weights"
        )
    config = IFNetConfig(enc, feat, tuple(widths), head, depth)
    first_in = state["block0.conv0.0.0.weight"].shape[1]
    later_in = state["block1.conv0.0.0.weight"].shape[1]
    if (first_in, later_in) != (config.first_block_inputs, config.later_block_inputs):
        raise WeightsError(
            f"block input channels {first_in}/{later_in} do not fit a RIFE 4.2x layout "
            f"({config.first_block_inputs}/{config.later_block_inputs})"
        )
    return config


def count_parameters(net: nn.Module) -> int:
    return sum(math.prod(p.shape) for p in net.parameters())
