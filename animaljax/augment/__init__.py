"""On-device augmentations: pure jnp functions with explicit PRNG keys, run inside the jitted step."""

from animaljax.augment.mixup import mixup, sample_mixup
from animaljax.augment.noise import mix_at_snr, random_noise_mix
from animaljax.augment.specaugment import spec_augment
from animaljax.augment.waveform import (
  clip_lengths,
  keep_prefix,
  random_crop,
  random_gain,
  random_lowpass,
  random_quantize,
  random_shorten,
  random_speed,
  random_time_shift,
)

__all__ = [
  "clip_lengths",
  "keep_prefix",
  "mix_at_snr",
  "mixup",
  "random_crop",
  "random_gain",
  "random_lowpass",
  "random_noise_mix",
  "random_quantize",
  "random_shorten",
  "random_speed",
  "random_time_shift",
  "sample_mixup",
  "spec_augment",
]
