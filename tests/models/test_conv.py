"""`animaljax.models.conv.conv_general_dilated`: XLA's values, with the CPU gradients computed by matmuls."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from animaljax.models.conv import conv_general_dilated

# name -> (x shape, kernel shape, padding, (matmuls, convolutions) in the compiled CPU gradient program):
#   taps:          >= 64 channels on a map of >= 32 padded positions per channel: kernel gradient one matmul
#                  in a loop over chunks of rows, input gradient XLA's convolution (+ the forward convolution);
#   taps_chunks:   a map of 2 x 42 x 32 padded rows, several chunks and a ragged last one;
#   small_map:     >= 64 channels on a smaller map: XLA's own gradients (three convolutions);
#   kernel_heavy:  the kernel outweighs the map: both gradients by one matmul each;
#   few_channels:  < 64 channels: XLA's own gradients;
#   asymmetric / 5x5: the offsets of uneven padding and of CNN6's kernel.
CASES = {
  "taps": ((1, 48, 40, 64), (3, 3, 64, 64), ((1, 1), (1, 1)), (1, 2)),
  "taps_chunks": ((2, 40, 30, 64), (3, 3, 64, 80), ((1, 1), (1, 1)), (1, 2)),
  "taps_asymmetric": ((1, 60, 36, 64), (3, 3, 64, 64), ((0, 1), (2, 0)), (1, 2)),
  "taps_5x5_asymmetric": ((2, 40, 30, 64), (5, 5, 64, 64), ((2, 1), (0, 2)), (1, 2)),
  "small_map": ((1, 20, 16, 64), (3, 3, 64, 64), ((1, 1), (1, 1)), (0, 3)),
  "kernel_heavy": ((2, 3, 2, 64), (3, 3, 64, 64), ((1, 1), (1, 1)), (2, 1)),
  "kernel_heavy_5x5_asymmetric": ((1, 4, 3, 64), (5, 5, 64, 64), ((2, 1), (0, 2)), (2, 1)),
  "few_channels": ((2, 9, 7, 6), (5, 5, 6, 5), ((2, 2), (2, 2)), (0, 3)),
}


def _loss(conv, padding):
  def loss(x, w):
    dn = lax.conv_dimension_numbers(x.shape, w.shape, ("NHWC", "HWIO", "NHWC"))
    return jnp.sum(jnp.sin(conv(x, w, (1, 1), padding, dimension_numbers=dn)))

  return jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))


@pytest.mark.parametrize("case", CASES)
def test_values_and_gradients_match_xla(case):
  x_shape, w_shape, padding, (dots, convs) = CASES[case]
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.standard_normal(x_shape), jnp.float32)
  w = jnp.asarray(rng.standard_normal(w_shape), jnp.float32) / np.sqrt(np.prod(w_shape[:3]))
  ours = _loss(conv_general_dilated, padding)
  if jax.default_backend() == "cpu":  # the path taken is the one this case is about
    hlo = ours.lower(x, w).compile().as_text()
    assert (hlo.count(" dot("), hlo.count(" convolution(")) == (dots, convs)
  (ref, (ref_dx, ref_dw)) = _loss(lax.conv_general_dilated, padding)(x, w)
  (out, (dx, dw)) = ours(x, w)
  np.testing.assert_allclose(float(out), float(ref), rtol=1e-6)
  assert dx.shape == x.shape and dw.shape == w.shape and dw.dtype == w.dtype
  np.testing.assert_allclose(
    np.asarray(dx), np.asarray(ref_dx), rtol=0, atol=1e-5 * float(jnp.abs(ref_dx).max())
  )
  np.testing.assert_allclose(
    np.asarray(dw), np.asarray(ref_dw), rtol=0, atol=1e-5 * float(jnp.abs(ref_dw).max())
  )


def test_bf16_inputs_keep_their_dtype():
  x_shape, w_shape, padding, _ = CASES["taps"]
  x = jnp.ones(x_shape, jnp.bfloat16)
  w = jnp.full(w_shape, 0.5, jnp.bfloat16)
  _, (dx, dw) = _loss(conv_general_dilated, padding)(x, w)
  assert dx.dtype == jnp.bfloat16 and dw.dtype == jnp.bfloat16
  _, (ref_dx, ref_dw) = _loss(lax.conv_general_dilated, padding)(x, w)
  np.testing.assert_allclose(np.asarray(dw, np.float32), np.asarray(ref_dw, np.float32), rtol=2e-2)


def test_other_convolutions_are_passed_to_lax_unchanged():
  rng = np.random.default_rng(1)
  x = jnp.asarray(rng.standard_normal((2, 10, 8, 3)), jnp.float32)
  w = jnp.asarray(rng.standard_normal((3, 3, 3, 4)), jnp.float32)
  dn = ("NHWC", "HWIO", "NHWC")
  for kwargs in (
    dict(window_strides=(2, 2), padding="SAME"),
    dict(window_strides=(1, 1), padding="VALID"),
    dict(window_strides=(1, 1), padding=((1, 1), (1, 1)), rhs_dilation=(2, 1)),
  ):
    ours = conv_general_dilated(x, w, dimension_numbers=dn, **kwargs)
    np.testing.assert_array_equal(
      np.asarray(ours), np.asarray(lax.conv_general_dilated(x, w, dimension_numbers=dn, **kwargs))
    )


def test_flax_conv_with_it_keeps_params_and_outputs():
  x = jnp.asarray(np.random.default_rng(2).standard_normal((2, 12, 6, 3)), jnp.float32)
  plain = nn.Conv(5, (3, 3), padding=((1, 1), (1, 1)), use_bias=False)
  ours = nn.Conv(
    5, (3, 3), padding=((1, 1), (1, 1)), use_bias=False, conv_general_dilated=conv_general_dilated
  )
  variables = plain.init(jax.random.key(0), x)
  assert jax.tree.map(jnp.shape, ours.init(jax.random.key(0), x)) == jax.tree.map(jnp.shape, variables)
  np.testing.assert_allclose(
    np.asarray(ours.apply(variables, x)), np.asarray(plain.apply(variables, x)), rtol=1e-6
  )
