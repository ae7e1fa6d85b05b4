"""A1111 seeds: the NV Philox generator, CPU/GPU sources, per-image generators, ENSD, variation seeds."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sdhub.generate.rng import (
    ImageNoise,
    NoiseGenerator,
    SeedPlan,
    default_rng_source,
    philox_randn,
    random_seed,
    slerp,
)

# CUDA torch.randn(3, 4) after manual_seed(0), as quoted in A1111's rng_philox and our research notes.
CUDA_REFERENCE = np.array([
    [-0.92466259, -0.42534415, -2.6438457, 0.14518388],
    [-0.12086647, -0.57972564, -0.62285122, -0.32838709],
    [-1.07454231, -0.36314407, -1.67105067, 2.26550497],
], dtype=np.float32)


def test_nv_generator_matches_the_cuda_philox_reference_values():
    values = philox_randn(0, (3, 4))
    assert values.dtype == np.float32
    # The reference is CUDA's fast-math output printed to 8 digits; A1111's NumPy formula agrees to ~3e-7.
    np.testing.assert_allclose(values, CUDA_REFERENCE, rtol=0, atol=1e-6)


def test_nv_generator_counts_calls_like_a_cuda_generator():
    generator = NoiseGenerator("nv", 1234)
    first, second = generator.randn((4, 8, 8)), generator.randn((4, 8, 8))
    assert torch.equal(first, torch.from_numpy(philox_randn(1234, (4, 8, 8), offset=0)))
    assert torch.equal(second, torch.from_numpy(philox_randn(1234, (4, 8, 8), offset=1)))
    assert not torch.equal(first, second)


def test_nv_generator_uses_the_high_bits_of_large_seeds():
    small = philox_randn(5, (16,))
    large = philox_randn(5 + 2**32, (16,))
    assert not np.array_equal(small, large)


def test_cpu_source_is_torchs_cpu_generator():
    expected = torch.randn((4, 8, 8), generator=torch.Generator("cpu").manual_seed(99))
    assert torch.equal(NoiseGenerator("cpu", 99).randn((4, 8, 8)), expected)


def test_unknown_source_is_refused():
    from sdhub.errors import UsageError

    with pytest.raises(UsageError, match="unknown RNG source"):
        NoiseGenerator("quantum", 1)


def test_default_source_is_gpu_noise_or_its_nv_replica():
    assert default_rng_source(cuda_available=True) == "gpu"
    assert default_rng_source(cuda_available=False) == "nv"


def test_random_seed_is_in_a1111s_range():
    seeds = {random_seed() for _ in range(50)}
    assert all(0 <= seed < 4294967294 for seed in seeds) and len(seeds) > 40


@pytest.mark.parametrize("source", ["cpu", "nv"])
def test_batch_images_equal_single_images_with_their_own_seeds(source):
    shape = (4, 8, 8)
    batch = ImageNoise(shape, SeedPlan.for_batch(100, 3), source).first()
    for index in range(3):
        single = ImageNoise(shape, SeedPlan.for_batch(100 + index, 1), source).first()
        assert torch.equal(batch[index], single[0])


def test_ensd_reseeds_the_per_step_noise_with_seed_plus_delta():
    shape = (4, 8, 8)
    noise = ImageNoise(shape, SeedPlan.for_batch(2870305590, 1, eta_noise_seed_delta=31337), "nv")
    first = noise.first()
    assert torch.equal(first[0], torch.from_numpy(philox_randn(2870305590, shape)))
    step_noise = noise.next()
    assert torch.equal(step_noise[0], torch.from_numpy(philox_randn(2870305590 + 31337, shape)))


def test_without_ensd_the_step_noise_continues_the_image_generator():
    shape = (4, 8, 8)
    noise = ImageNoise(shape, SeedPlan.for_batch(7, 1), "nv")
    noise.first()
    assert torch.equal(noise.next()[0], torch.from_numpy(philox_randn(7, shape, offset=1)))


def test_variation_strength_blends_from_seed_to_subseed():
    shape = (4, 16, 16)
    seed_noise = ImageNoise(shape, SeedPlan.for_batch(1, 1), "cpu").first()
    sub_noise = ImageNoise(shape, SeedPlan.for_batch(2, 1), "cpu").first()
    none = ImageNoise(shape, SeedPlan.for_batch(1, 1, subseed=2, subseed_strength=0.0), "cpu").first()
    full = ImageNoise(shape, SeedPlan.for_batch(1, 1, subseed=2, subseed_strength=1.0), "cpu").first()
    half = ImageNoise(shape, SeedPlan.for_batch(1, 1, subseed=2, subseed_strength=0.5), "cpu").first()
    assert torch.equal(none, seed_noise)
    torch.testing.assert_close(full, sub_noise, rtol=0, atol=1e-4)
    distance_seed = (half - seed_noise).norm()
    distance_sub = (half - sub_noise).norm()
    assert abs(distance_seed - distance_sub) / distance_seed < 0.1
    # slerp keeps the noise's scale where a plain average would shrink it
    assert abs(half.std() - 1) < 0.1 and (seed_noise + sub_noise).div(2).std() < 0.8


def test_variation_seeds_give_each_image_the_same_seed_and_its_own_subseed():
    plan = SeedPlan.for_batch(10, 3, subseed=50, subseed_strength=0.3)
    assert plan.seeds == (10, 10, 10) and plan.subseeds == (50, 51, 52)


def test_slerp_of_parallel_noise_takes_a1111s_linear_fallback():
    low = torch.ones(4, 8, 8)
    assert torch.equal(slerp(0.25, low, low * 2), low * 0.25 + low * 2 * 0.75)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_gpu_noise_equals_nv_noise():
    for seed in (0, 1234, 2870305590):
        gpu = NoiseGenerator("gpu", seed, "cuda").randn((4, 64, 64)).cpu()
        nv = NoiseGenerator("nv", seed).randn((4, 64, 64))
        torch.testing.assert_close(gpu, nv, rtol=0, atol=1e-5)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message shown without CUDA")
def test_gpu_source_without_cuda_points_to_nv():
    from sdhub.errors import MissingDependencyError

    with pytest.raises(MissingDependencyError, match="--rng nv"):
        NoiseGenerator("gpu", 1)
