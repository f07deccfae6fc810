"""The PyTorch rebuild that benchmarks/train_step.py compares against computes the project's
network: same logits, same gradients, from the same weights."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from alexnet_jax.model.network import AlexNet
from benchmarks.train_step import layer_arrays

torch = pytest.importorskip('torch', reason='the PyTorch baseline needs requirements-bench.txt')
from benchmarks import pytorch_alexnet  # pylint: disable=wrong-import-position

IMAGE_SIZE = 99  # the smallest paper-net input worth testing: a 2x2 map before fc6


@pytest.fixture(scope='module')
def models():
  model = AlexNet('paper', num_classes=10, image_size=IMAGE_SIZE, dropout_rate=0.0, width=0.25,
                  rngs=nnx.Rngs(3))
  arrays = layer_arrays(nnx.state(model, nnx.Param))
  return model, arrays, pytorch_alexnet.TorchAlexNet.from_arrays(arrays, num_classes=10,
                                                                    dropout_rate=0.0)


def test_same_logits(models):
  model, _, torch_model = models
  images = np.random.default_rng(0).normal(0, 60, (3, IMAGE_SIZE, IMAGE_SIZE, 3)).astype(
      np.float32)
  model.eval()
  expected = np.asarray(model(jnp.asarray(images)))
  torch_model.eval()
  with torch.no_grad():
    logits = torch_model(pytorch_alexnet.to_torch_images(images)).numpy()
  assert np.abs(expected).max() > 0.1  # the net's output is not trivially zero
  np.testing.assert_allclose(logits, expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())


def test_same_gradients(models):
  """Gradients of the mean cross-entropy for every weight, transposed back to the project's
  layouts: the backward passes (LRN, grouped convs, pooling) agree too."""
  model, arrays, torch_model = models
  model.train()  # dropout_rate is 0: train mode differs from eval mode in nothing else
  rng = np.random.default_rng(1)
  images = rng.normal(0, 60, (4, IMAGE_SIZE, IMAGE_SIZE, 3)).astype(np.float32)
  labels = rng.integers(0, 10, 4)
  graph, params, rest = nnx.split(model, nnx.Param, ...)

  def loss_fn(params):
    logits = nnx.merge(graph, params, rest)(jnp.asarray(images))
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

  expected = layer_arrays(jax.jit(jax.grad(loss_fn))(params))
  torch_model.train()
  torch.nn.functional.cross_entropy(
      torch_model(pytorch_alexnet.to_torch_images(images)), torch.from_numpy(labels)).backward()
  for layer in arrays:
    grad = getattr(torch_model, layer).weight.grad.numpy()
    grad = grad.transpose(2, 3, 1, 0) if grad.ndim == 4 else grad.T
    scale = np.abs(expected[layer]['kernel']).max()
    assert scale > 0, layer
    np.testing.assert_allclose(grad, expected[layer]['kernel'], rtol=1e-4, atol=1e-4 * scale,
                               err_msg=layer)
    np.testing.assert_allclose(getattr(torch_model, layer).bias.grad.numpy(),
                               expected[layer]['bias'], rtol=1e-4,
                               atol=1e-4 * np.abs(expected[layer]['bias']).max(), err_msg=layer)
