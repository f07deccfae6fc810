"""The network against the reference facts of ALEXNET.md: sizes, shapes, init, dropout."""

import math
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from alexnet_jax.model import network
from alexnet_jax.model.layer_table import format_table, layer_table
from alexnet_jax.model.network import AlexNet, count_params, min_image_size


def abstract(variant='paper', **kwargs):
  """The model with shapes only: fast, and enough for counting and tracing."""
  return nnx.eval_shape(lambda: AlexNet(variant, rngs=nnx.Rngs(0), **kwargs))


@nnx.jit
def forward(model, images):
  """The logits and every layer's output, in one compiled program: run eagerly, each of the
  network's operations would be compiled on its own (seconds per test)."""
  captured = {}
  logits = model(images, capture=captured)
  return logits, captured


@pytest.mark.parametrize('variant,params', [
    ('paper', 60_965_224),
    ('paper_ungrouped', 62_378_344),
    ('torchvision', 61_100_840),
])
def test_parameter_counts(variant, params):
  assert count_params(abstract(variant)) == params


def test_paper_layer_shapes_at_227():
  rows = {r.name: r.output_shape for r in layer_table(abstract('paper'))}
  spatial = [rows[name][0] for name in
             ('conv1', 'pool1', 'conv2', 'pool2', 'conv3', 'conv4', 'conv5', 'pool5')]
  assert spatial == [55, 27, 27, 13, 13, 13, 13, 6]
  assert rows['conv1'] == (55, 55, 96) and rows['lrn1'] == (55, 55, 96)
  assert rows['pool5'] == (6, 6, 256) and rows['fc6'] == (4096,) and rows['fc8'] == (1000,)


def test_multiply_adds_match_reference():
  # ALEXNET.md, per layer in millions of multiply-adds (paper grouped net at 227).
  reference = {'conv1': 105.4, 'conv2': 223.9, 'conv3': 149.5, 'conv4': 112.1,
               'conv5': 74.8, 'fc6': 37.7, 'fc7': 16.8, 'fc8': 4.1}
  rows = layer_table(abstract('paper'))
  macs = {r.name: r.macs for r in rows}
  assert {name: round(macs[name] / 1e6, 1) for name in reference} == reference
  assert round(sum(macs.values()) / 1e6, 1) == 724.4
  torchvision = sum(r.macs for r in layer_table(abstract('torchvision')))
  assert round(torchvision / 1e6, 1) == 714.2


@pytest.mark.parametrize('variant', sorted(network.ARCHITECTURES))
@pytest.mark.parametrize('image_size', [None, 67, 100, 256])
def test_traced_shapes_follow_the_shape_arithmetic(variant, image_size):
  model = abstract(variant, image_size=image_size)
  traced = {r.name: r.output_shape[0] for r in layer_table(model) if len(r.output_shape) == 3}
  steps = network.spatial_steps(model.arch, model.image_size)
  assert {s.name: s.size for s in steps} == {n: s for n, s in traced.items()
                                             if not n.startswith('lrn')}
  # fc6 is sized from the final feature map.
  final = steps[-1].size
  assert model.fc6.kernel.shape == (final * final * model.arch.convs[-1].features, 4096)


def test_minimum_image_size():
  assert min_image_size('paper') == 67
  assert min_image_size('paper_ungrouped') == 67
  assert min_image_size('torchvision') == 63
  with pytest.raises(ValueError, match='smallest input .* is 67'):
    AlexNet('paper', image_size=66, rngs=nnx.Rngs(0))
  model = AlexNet('paper', num_classes=10, image_size=67, rngs=nnx.Rngs(0))
  assert model.fc6.kernel.shape == (256, 4096)  # a 1x1x256 final map
  model.eval()
  logits, _ = forward(model, jnp.ones((2, 67, 67, 3)))
  assert logits.shape == (2, 10) and bool(jnp.all(jnp.isfinite(logits)))


def test_bad_arguments_name_the_problem():
  with pytest.raises(ValueError, match=r"Unknown AlexNet variant 'vgg'.*'paper'"):
    AlexNet('vgg', rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match="Unknown init 'xavier'"):
    AlexNet('paper', image_size=67, init='xavier', rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match="grouped_conv must be 'split' or 'xla'"):
    AlexNet('paper', image_size=67, grouped_conv='cudnn', rngs=nnx.Rngs(0))
  model = AlexNet('paper', num_classes=10, image_size=67, rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match=r'takes images of shape \(N, 67, 67, 3\), got \(1, 64, 64, 3\)'):
    model(jnp.ones((1, 64, 64, 3)))


def biases(model):
  return {name: np.asarray(layer.bias[...]) for name, layer in model.named_layers()}


def kernels(model):
  return {name: np.asarray(layer.kernel[...]) for name, layer in model.named_layers()}


def test_paper_init():
  model = AlexNet('paper', rngs=nnx.Rngs(0))
  ones = {'conv2', 'conv4', 'conv5', 'fc6', 'fc7'}
  for name, bias in biases(model).items():
    np.testing.assert_array_equal(bias, 1.0 if name in ones else 0.0, err_msg=name)
  for name, kernel in kernels(model).items():
    # N(0, 0.01): the sample std of >= 34,848 draws is within 2% of 0.01.
    assert abs(kernel.std() - 0.01) < 2e-4, name
    assert abs(kernel.mean()) < 4 * 0.01 / math.sqrt(kernel.size), name


def test_he_init():
  model = AlexNet('paper', init='he', rngs=nnx.Rngs(0))
  for name, bias in biases(model).items():
    np.testing.assert_array_equal(bias, 0.0, err_msg=name)
  for name, kernel in kernels(model).items():
    fan_in = math.prod(kernel.shape[:-1])  # grouped kernels: kh * kw * in / groups
    assert abs(kernel.std() / math.sqrt(2.0 / fan_in) - 1) < 0.03, name


def test_kernels_have_nnx_conv_grouped_layout():
  model = abstract('paper')
  assert model.conv1.kernel.shape == (11, 11, 3, 96)
  assert model.conv2.kernel.shape == (5, 5, 48, 256)
  assert model.conv3.kernel.shape == (3, 3, 256, 384)
  assert model.conv4.kernel.shape == (3, 3, 192, 384)
  assert model.conv5.kernel.shape == (3, 3, 192, 256)
  assert isinstance(model.conv2, nnx.Conv) and model.conv2.feature_group_count == 2
  assert isinstance(model.fc6, nnx.Linear)


def test_grouped_conv_implementations_give_the_same_network():
  images = jax.random.uniform(jax.random.key(1), (2, 227, 227, 3), minval=-1, maxval=1)
  outputs = {}
  for impl in ('split', 'xla'):
    model = AlexNet('paper', num_classes=10, init='he', grouped_conv=impl, rngs=nnx.Rngs(0))
    model.eval()
    # Full float32: GPUs would otherwise convolve in TF32, whose rounding differs by algorithm.
    with jax.default_matmul_precision('highest'):
      _, outputs[impl] = forward(model, images)
  conv1 = outputs['split']['conv1']
  np.testing.assert_array_equal(np.asarray(conv1), np.asarray(outputs['xla']['conv1']))
  for name in ('conv2', 'conv4', 'conv5', 'fc8'):
    np.testing.assert_allclose(np.asarray(outputs['split'][name]),
                               np.asarray(outputs['xla'][name]), rtol=1e-4, atol=1e-4,
                               err_msg=name)
  assert float(jnp.std(outputs['split']['fc8'])) > 0  # the comparison saw a live signal


def test_eval_is_deterministic_and_train_drops_at_the_configured_rate():
  rate = 0.3
  model = AlexNet('paper', num_classes=10, image_size=67, dropout_rate=rate,
                  rngs=nnx.Rngs(params=0, dropout=1))
  images = jax.random.uniform(jax.random.key(2), (64, 67, 67, 3))

  model.eval()
  (a, first), (b, _) = forward(model, images), forward(model, images)
  np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  np.testing.assert_array_equal(np.asarray(first['dropout6']), np.asarray(first['fc6']))

  model.train()
  (a, first), (b, _) = forward(model, images), forward(model, images)
  assert not np.array_equal(np.asarray(a), np.asarray(b))  # a fresh mask each call
  for n in (6, 7):
    before, after = first[f'fc{n}'], first[f'dropout{n}']
    dropped = (after == 0) & (before != 0)
    # 64 x 4096 units: the dropped fraction is within 1% of the rate (sd 0.0023).
    assert abs(float(jnp.sum(dropped) / jnp.sum(before != 0)) - rate) < 0.01, n
    # Kept units are scaled by 1 / (1 - rate), so eval and train agree in expectation.
    kept = after != 0
    np.testing.assert_allclose(np.asarray(after[kept]), np.asarray(before[kept] / (1 - rate)),
                               rtol=1e-6)


def test_dropout_placement_follows_each_variant():
  order = {}
  for variant in ('paper', 'torchvision'):
    names = [r.name for r in layer_table(abstract(variant))]
    order[variant] = names[names.index('pool5') + 1:]
  # The paper drops out fc6's and fc7's outputs; torchvision their inputs.
  assert order['paper'] == ['fc6', 'dropout6', 'fc7', 'dropout7', 'fc8']
  assert order['torchvision'] == ['dropout6', 'fc6', 'dropout7', 'fc7', 'fc8']
  assert not hasattr(abstract('torchvision'), 'lrn1')


def test_bfloat16_computation_with_float32_parameters():
  images = jax.random.uniform(jax.random.key(3), (4, 67, 67, 3), minval=-1, maxval=1)
  outputs = {}
  for dtype in (jnp.float32, jnp.bfloat16):
    model = AlexNet('paper', num_classes=10, image_size=67, dtype=dtype, init='he',
                    rngs=nnx.Rngs(0))
    model.eval()
    outputs[dtype] = forward(model, images)
    assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(nnx.state(model, nnx.Param)))
  logits16, captured16 = outputs[jnp.bfloat16]
  assert logits16.dtype == jnp.float32
  assert captured16['conv1'].dtype == jnp.bfloat16 and captured16['lrn1'].dtype == jnp.bfloat16
  logits32 = outputs[jnp.float32][0]
  scale = float(jnp.max(jnp.abs(logits32)))
  np.testing.assert_allclose(np.asarray(logits16), np.asarray(logits32), atol=0.05 * scale)


def test_summary_command_prints_the_reference_totals():
  text = subprocess.run([sys.executable, '-m', 'alexnet_jax.commands.model', '--variant=paper'],
                        capture_output=True, text=True, check=True).stdout
  assert 'total parameters        60,965,224' in text
  assert 'total multiply-adds     724,406,816' in text
  assert '(227 + 2*0 - 11) // 4 + 1 = 55' in text
  conv_lines = [line for line in text.splitlines() if line.startswith('conv')]
  assert [line.split()[0] for line in conv_lines] == ['conv1', 'conv2', 'conv3', 'conv4', 'conv5']


def test_package_imports_without_tensorflow():
  # The model must run on machines with jax alone (accelerator hosts, Colab without TF).
  # The device half of the input belongs to the step's side too (tests/test_layout.py: all of it).
  code = ('import sys, alexnet_jax.model.network, alexnet_jax.model.layers; '
          'import alexnet_jax.model.normalization, alexnet_jax.model.batch; '
          'import alexnet_jax.training.train_step, alexnet_jax.training.faults; '
          'import alexnet_jax.run.checkpoints, alexnet_jax.run.metric_writer; '
          'from alexnet_jax import AlexNet; '
          'assert "tensorflow" not in sys.modules, "alexnet_jax imported tensorflow"; '
          'assert "ml_collections" not in sys.modules, "alexnet_jax imported ml_collections"')
  subprocess.run([sys.executable, '-c', code], check=True)


def test_docs_show_the_current_layer_table():
  page = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'docs',
                      'alexnet.md')
  with open(page) as f:
    text = f.read()
  assert format_table(abstract('paper')) in text


def test_width_scales_every_layer_and_keeps_the_halves_even():
  model = nnx.eval_shape(lambda: AlexNet('paper', 6, 67, width=0.125, rngs=nnx.Rngs(0)))
  features = [getattr(model, f'conv{i}').kernel.shape[-1] for i in range(1, 6)]
  assert features == [12, 32, 48, 48, 32]  # 96, 256, 384, 384, 256 / 8
  assert model.fc6.kernel.shape == (32, 512) and model.fc8.kernel.shape == (512, 6)
  odd = nnx.eval_shape(lambda: AlexNet('paper', 6, 67, width=0.1, rngs=nnx.Rngs(0)))
  assert [getattr(odd, f'conv{i}').kernel.shape[-1] for i in range(1, 6)] == [10, 26, 38, 38, 26]
  with pytest.raises(ValueError, match='width must be positive, got 0'):
    AlexNet('paper', width=0, rngs=nnx.Rngs(0))


def test_model_from_a_training_config():
  from configs import default
  config = default.get_config()
  config.model.width = 0.125
  assert network.image_size(config) == 67
  model = nnx.eval_shape(lambda: network.from_config(config, 6, nnx.Rngs(0)))
  assert (model.variant, model.num_classes, model.image_size, model.width) == (
      'paper', 6, 67, 0.125)
  assert model.dtype == jnp.float32 and model.dropout6.rate == config.model.dropout_rate
  assert network.identity(config, 6) == {'variant': 'paper', 'num_classes': 6,
                                           'image_size': 67, 'width': 0.125}
  config.image_size = 0  # the variant's own
  config.model.variant = 'torchvision'
  config.model.dtype = 'bfloat16'
  assert network.image_size(config) == 224
  model = nnx.eval_shape(lambda: network.from_config(config, 6, nnx.Rngs(0)))
  assert model.image_size == 224 and model.dtype == jnp.bfloat16
  assert network.identity(config, 6)['image_size'] == 224
