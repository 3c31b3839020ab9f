"""Interpolator: the public API the renderer and the pipeline call."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from reframe.engine.ifnet import IFNet, scale_list
from reframe.engine.inference import Interpolator, _cpu_has_bf16, default_scale
from reframe.engine.protocols import FrameInterpolator
from reframe.errors import InvalidInput
from tests.engine.test_ifnet import psnr, random_net, smooth_pair
from tests.fixtures.media import moving_square_frames


def psnr_uint8(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def to_tensor(frames: list[np.ndarray]) -> torch.Tensor:
    return torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).float() / 255.0


@pytest.fixture(scope="module")
def tiny_interpolator() -> Interpolator:
    return Interpolator.from_network(random_net(), threads=1)


def test_default_scale() -> None:
    assert default_scale(640, 360) == 1.0
    assert default_scale(1920, 1080) == 1.0
    assert default_scale(2560, 1440) == 0.5
    assert default_scale(3840, 2160) == 0.5


def test_satisfies_the_protocol(tiny_interpolator: Interpolator) -> None:
    interp: FrameInterpolator = tiny_interpolator
    assert callable(interp.interpolate)


@pytest.mark.parametrize(("h", "w"), [(48, 64), (45, 67), (97, 130), (64, 64)])
def test_any_size_is_padded_and_cropped(tiny_interpolator: Interpolator, h: int, w: int) -> None:
    img0, img1 = smooth_pair(2, 128, 192)
    img0, img1 = img0[..., :h, :w], img1[..., :h, :w]
    out = tiny_interpolator.interpolate(img0, img1, torch.tensor([0.25, 0.75]))
    assert out.shape == (2, 3, h, w)
    assert out.dtype == torch.float32
    assert float(out.min()) >= 0.0
    assert float(out.max()) <= 1.0


def test_padding_matches_a_manual_pad(tiny_interpolator: Interpolator) -> None:
    img0, img1 = smooth_pair(1, 64, 128)
    crop0, crop1 = img0[..., :50, :100], img1[..., :50, :100]
    out = tiny_interpolator.interpolate(crop0, crop1, torch.tensor([0.5]))
    # Edges are replicated into the padding, not zero-filled.
    padded0 = torch.nn.functional.pad(crop0, (0, 28, 0, 14), mode="replicate")
    padded1 = torch.nn.functional.pad(crop1, (0, 28, 0, 14), mode="replicate")
    with torch.inference_mode():
        manual = tiny_interpolator.net(padded0, padded1, torch.tensor([0.5]), scale_list(1.0))
    torch.testing.assert_close(out, manual[..., :50, :100].clamp(0, 1))


def test_timestep_is_per_sample(tiny_interpolator: Interpolator) -> None:
    img0, img1 = smooth_pair(1, 64, 64)
    pair0, pair1 = img0.expand(3, -1, -1, -1), img1.expand(3, -1, -1, -1)
    ts = torch.tensor([0.2, 0.5, 0.8])
    batched = tiny_interpolator.interpolate(pair0, pair1, ts)
    for k, t in enumerate(ts):
        single = tiny_interpolator.interpolate(img0, img1, t.view(1))
        torch.testing.assert_close(batched[k : k + 1], single, atol=1e-5, rtol=0)
    # Different timesteps really give different frames.
    assert psnr(batched[0], batched[2]) < 45


def test_max_batch_splits_without_changing_results() -> None:
    net = random_net()
    img0, img1 = smooth_pair(5, 64, 64)
    ts = torch.linspace(0.1, 0.9, 5)
    whole = Interpolator.from_network(net, max_batch=8, threads=1).interpolate(img0, img1, ts)
    split = Interpolator.from_network(net, max_batch=2, threads=1).interpolate(img0, img1, ts)
    torch.testing.assert_close(whole, split, atol=1e-5, rtol=0)


def test_threads_are_set_per_instance() -> None:
    before = torch.get_num_threads()
    try:
        Interpolator.from_network(IFNet(), threads=1)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_uint8_helper_shapes(tiny_interpolator: Interpolator) -> None:
    frames = moving_square_frames(2, width=70, height=50)
    out = tiny_interpolator.interpolate_uint8(frames[0], frames[1], [0.25, 0.5, 0.75])
    assert len(out) == 3
    assert all(o.shape == (50, 70, 3) and o.dtype == np.uint8 for o in out)
    assert tiny_interpolator.interpolate_uint8(frames[0], frames[1], []) == []


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"precision": "fp16"}, "fp16 is for GPUs"),
        ({"precision": "int8"}, "precision must be one of"),
        ({"scale": 0.3}, "scale must be one of"),
        ({"max_batch": 0}, "max_batch"),
        ({"threads": 0}, "threads"),
    ],
)
def test_bad_options_are_refused(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        Interpolator.from_network(IFNet(), **kwargs)  # type: ignore[arg-type]


def test_mismatched_inputs_are_refused(tiny_interpolator: Interpolator) -> None:
    with pytest.raises(InvalidInput, match="must both be"):
        tiny_interpolator.interpolate(
            torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 8, 9), torch.tensor([0.5])
        )
    with pytest.raises(InvalidInput, match="timestep must have shape"):
        tiny_interpolator.interpolate(
            torch.zeros(2, 3, 8, 8), torch.zeros(2, 3, 8, 8), torch.tensor([0.5])
        )


# ---------------------------------------------------------------- real weights


@pytest.fixture(scope="module")
def rife(rife_weights: Path) -> Interpolator:
    return Interpolator(rife_weights, threads=None)


@pytest.mark.weights
def test_known_linear_motion_matches_ground_truth(rife: Interpolator) -> None:
    # Frames 0, 1, 2 of a square moving 4 px/frame: the middle one is the exact answer.
    frames = moving_square_frames(3, width=256, height=144, speed_px=4.0)
    (mid,) = rife.interpolate_uint8(frames[0], frames[2], [0.5])
    rife_db = psnr_uint8(mid, frames[1])
    blend = ((frames[0].astype(np.float32) + frames[2]) / 2).round().astype(np.uint8)
    blend_db = psnr_uint8(blend, frames[1])
    print(f"synthetic linear motion t=0.5: RIFE {rife_db:.2f} dB, blend {blend_db:.2f} dB")
    assert rife_db >= 40.0
    assert rife_db > blend_db + 5


@pytest.mark.weights
def test_arbitrary_timesteps_follow_the_motion(rife: Interpolator) -> None:
    # 24 -> 60 style positions between frames 0 and 5 (speed 2 px): t = 0.4 and 0.8 land on
    # frames 2 and 4 exactly.
    frames = moving_square_frames(6, width=128, height=96, speed_px=2.0)
    out = rife.interpolate_uint8(frames[0], frames[5], [0.4, 0.8])
    db = [psnr_uint8(out[0], frames[2]), psnr_uint8(out[1], frames[4])]
    wrong = psnr_uint8(out[0], frames[4])
    print(f"t=0.4: {db[0]:.2f} dB, t=0.8: {db[1]:.2f} dB (t=0.4 vs frame 4: {wrong:.2f} dB)")
    assert min(db) >= 35.0
    assert wrong < min(db) - 5


@pytest.mark.weights
def test_fast_forward_matches_reference_on_real_weights(rife: Interpolator) -> None:
    frames = moving_square_frames(3, width=256, height=192, speed_px=6.0, seed=3)
    img0, img1 = to_tensor([frames[0]]), to_tensor([frames[2]])
    t = torch.tensor([0.5])
    with torch.inference_mode():
        ref = rife.net.forward_reference(img0, img1, t, scale_list(1.0))
        fast = rife.net(img0, img1, t, scale_list(1.0))
    max_abs = float((fast - ref).abs().max())
    print(f"fast vs reference: {psnr(fast, ref):.2f} dB, max abs {max_abs:.4f}")
    assert psnr(fast, ref) >= 50.0


@pytest.mark.weights
@pytest.mark.skipif(not _cpu_has_bf16(), reason="this CPU has no native bf16")
def test_bf16_stays_within_45_db_of_fp32(rife_weights: Path, rife: Interpolator) -> None:
    frames = moving_square_frames(3, width=256, height=144, speed_px=5.0, seed=1)
    low = Interpolator(rife_weights, precision="bf16")
    img0, img1 = to_tensor([frames[0], frames[0]]), to_tensor([frames[2], frames[2]])
    t = torch.tensor([0.3, 0.5])
    ref = rife.interpolate(img0, img1, t)
    out = low.interpolate(img0, img1, t)
    db = psnr(out, ref)
    print(f"bf16 vs fp32: {db:.2f} dB")
    assert db >= 45.0


def test_the_forward_batch_fits_the_memory_budget_on_cpu_only() -> None:
    from reframe.engine.inference import (
        CPU_FORWARD_BUDGET_BYTES,
        cpu_peak_bytes,
        default_max_batch,
        forward_bytes_per_frame,
    )

    # 720p: two frames per pass fit the budget, three do not; 1080p and 4K take one.
    assert default_max_batch(1280, 720, "cpu") == 2
    assert 3 * forward_bytes_per_frame(1280, 720) > CPU_FORWARD_BUDGET_BYTES
    assert default_max_batch(1920, 1080, "cpu") == 1
    assert default_max_batch(3840, 2160, "cpu") == 1
    assert default_max_batch(320, 180, "cpu") == 8
    # What the measured model predicts for a 720p CPU process (measured: ~1.6-1.8 GiB).
    assert 1.5 * 2**30 < cpu_peak_bytes(1280, 720) < 2.0 * 2**30
    # A GPU takes the render core's whole batch at once.
    assert default_max_batch(1280, 720, "cuda") == 8
