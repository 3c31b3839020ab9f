"""The network itself: loading rules, geometry, and the fast forward against the reference."""

from __future__ import annotations

import pytest
import torch

from reframe.engine.ifnet import (
    IFNet,
    IFNetConfig,
    config_from_state_dict,
    padding_unit,
    scale_list,
    warp,
)
from reframe.errors import WeightsError


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = torch.mean((a.double() - b.double()) ** 2).item()
    return float("inf") if mse == 0 else 10 * torch.log10(torch.tensor(1.0 / mse)).item()


def random_net(seed: int = 0) -> IFNet:
    torch.manual_seed(seed)
    net = IFNet().eval()
    # Default init gives near-zero flows; larger head weights make the flows (and so the
    # warps the fast path restructures) actually move pixels by several pixels.
    with torch.no_grad():
        for block in net.blocks:
            block.lastconv[0].weight.mul_(4.0)
    return net


def smooth_pair(b: int, h: int, w: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    base = torch.rand(b, 3, h // 8, w // 8, generator=g)
    img0 = torch.nn.functional.interpolate(base, size=(h, w), mode="bicubic").clamp(0, 1)
    img1 = torch.roll(img0, shifts=(2, 3), dims=(2, 3))
    return img0, img1


def test_config_is_read_from_tensor_shapes() -> None:
    narrow = IFNetConfig(encoder_channels=8, feature_channels=2, block_channels=(64, 48, 32, 16, 8))
    state = IFNet(narrow).state_dict()
    assert config_from_state_dict(state) == narrow
    assert config_from_state_dict(IFNet().state_dict()) == IFNetConfig()


def test_training_only_keys_are_ignored() -> None:
    state = dict(IFNet().state_dict())
    state["teacher.conv0.0.0.weight"] = torch.zeros(1)
    state["caltime.0.weight"] = torch.zeros(1)
    IFNet.from_state_dict(state)


def test_unexpected_key_is_refused() -> None:
    state = dict(IFNet().state_dict())
    state["block2.extra.weight"] = torch.zeros(1)
    with pytest.raises(WeightsError, match=r"unexpected.*block2\.extra\.weight"):
        IFNet.from_state_dict(state)


def test_missing_key_is_refused() -> None:
    state = dict(IFNet().state_dict())
    del state["block3.convblock.0.beta"]
    with pytest.raises(WeightsError, match=r"missing.*block3\.convblock\.0\.beta"):
        IFNet.from_state_dict(state)


def test_shape_mismatch_is_refused() -> None:
    state = dict(IFNet().state_dict())
    state["block1.convblock.2.conv.bias"] = torch.zeros(7)
    with pytest.raises(WeightsError, match="do not fit"):
        IFNet.from_state_dict(state)


def test_not_an_ifnet_is_refused() -> None:
    with pytest.raises(WeightsError, match="not a RIFE IFNet"):
        IFNet.from_state_dict({"fc.weight": torch.zeros(2, 2)})


def test_warp_zero_flow_is_identity_and_integer_flow_shifts() -> None:
    src = torch.rand(2, 5, 16, 20)
    zero = torch.zeros(2, 2, 16, 20)
    torch.testing.assert_close(warp(src, zero), src)
    flow = zero.clone()
    flow[:, 0] = 3.0  # sample 3 px to the right
    out = warp(src, flow)
    torch.testing.assert_close(out[..., :-3], src[..., 3:])
    torch.testing.assert_close(out[..., -3:], src[..., -1:].expand(-1, -1, -1, 3))


def test_scale_list_and_padding_unit() -> None:
    assert scale_list(1.0) == [16, 8, 4, 2, 1]
    assert scale_list(0.5) == [32, 16, 8, 4, 2]
    assert padding_unit(1.0) == 64
    assert padding_unit(0.5) == 128
    with pytest.raises(ValueError, match="integer padding unit"):
        padding_unit(0.3)
    assert IFNet.supports_fast(scale_list(1.0))
    assert IFNet.supports_fast(scale_list(0.5))
    assert not IFNet.supports_fast(scale_list(2.0))


@pytest.mark.parametrize("scale", [1.0, 0.5])
def test_fast_forward_matches_reference(scale: float) -> None:
    net = random_net()
    unit = padding_unit(scale)
    img0, img1 = smooth_pair(2, unit * 2, unit * 3)
    t = torch.tensor([0.3, 0.8])
    scales = scale_list(scale)
    with torch.inference_mode():
        ref = net.forward_reference(img0, img1, t, scales)
        fast = net(img0, img1, t, scales)
    assert fast.shape == ref.shape == img0.shape
    # The flows move content by several pixels, so this is not trivially the input.
    assert psnr(ref, img0) < 40
    assert psnr(fast, ref) > 50, psnr(fast, ref)


def test_fast_forward_first_blocks_are_exact() -> None:
    # With the warps made irrelevant (identical frames, zero flow into later blocks), the
    # restructured resizes must reproduce the reference to float rounding.
    net = random_net()
    for block in net.blocks[1:]:
        with torch.no_grad():
            block.lastconv[0].weight.zero_()
            block.lastconv[0].bias.zero_()
    with torch.no_grad():
        net.blocks[0].lastconv[0].weight[:, :4].zero_()
        net.blocks[0].lastconv[0].bias.zero_()
    img0, _ = smooth_pair(1, 128, 128)
    t = torch.tensor([0.5])
    with torch.inference_mode():
        ref = net.forward_reference(img0, img0, t, scale_list(1.0))
        fast = net(img0, img0, t, scale_list(1.0))
    torch.testing.assert_close(fast, ref, atol=1e-5, rtol=0)


def test_pair_index_shares_encoding_without_changing_results() -> None:
    net = random_net()
    img0, img1 = smooth_pair(2, 64, 128)
    index = torch.tensor([0, 0, 1, 1, 0])
    t = torch.tensor([0.2, 0.6, 0.4, 0.9, 0.5])
    with torch.inference_mode():
        shared = net(img0, img1, t, scale_list(1.0), index)
        expanded = net(img0[index], img1[index], t, scale_list(1.0))
    torch.testing.assert_close(shared, expanded, atol=1e-5, rtol=0)


def test_bf16_convolutions_keep_flows_in_fp32() -> None:
    net = random_net()
    img0, img1 = smooth_pair(1, 128, 128)
    t = torch.tensor([0.5])
    with torch.inference_mode():
        ref = net(img0, img1, t, scale_list(1.0))
        low = IFNet.from_state_dict(net.state_dict()).to(torch.bfloat16)
        out = low(img0, img1, t, scale_list(1.0))
    assert out.dtype == torch.float32
    assert psnr(out, ref) > 35  # random weights; the real-weights bound is in test_inference


def test_folding_residual_gains_keeps_the_function() -> None:
    net = random_net()
    with torch.no_grad():
        for block in net.blocks:
            for res in block.convblock:
                res.beta.uniform_(0.2, 1.5)
    img0, img1 = smooth_pair(1, 64, 128)
    t = torch.tensor([0.4])
    with torch.inference_mode():
        before = net(img0, img1, t, scale_list(1.0))
        net.fold_residual_gains()
        after = net(img0, img1, t, scale_list(1.0))
    torch.testing.assert_close(after, before, atol=1e-4, rtol=0)
