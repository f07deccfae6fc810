"""The paper network rebuilt in PyTorch, from the project's own weights: the baseline of
`benchmarks.train_step`.

    model = TorchAlexNet.from_arrays(arrays)   # arrays[layer]['kernel' | 'bias']: numpy

The same layers as `alexnet_jax.model.network.AlexNet('paper')` (two-group conv2, conv4, conv5; LRN
within each half after conv1 and conv2; overlapping pooling; dropout after fc6 and fc7) and
the same weights, transposed to PyTorch's layouts: a conv kernel (kh, kw, in/g, out) becomes
(out, in/g, kh, kw), a dense kernel (in, out) becomes (out, in). fc6 reads the final map
flattened as (h, w, c), as the project flattens it, so its weights need no permutation.

    python -m benchmarks.pytorch_alexnet --inputs=FILE.npz   # what benchmarks.train_step runs

Written as a PyTorch user would write it (grouped `nn.Conv2d`, `F.local_response_norm`,
`torch.optim.SGD(momentum=0.9, weight_decay=5e-4)`), and imported
only by the benchmarks and tests that compare against it: torch is not a dependency of
`alexnet_jax` (requirements-bench.txt).
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from benchmarks.measure import median_seconds, peak_rss_bytes

LAYERS = ('conv1', 'conv2', 'conv3', 'conv4', 'conv5', 'fc6', 'fc7', 'fc8')
LRN_SIZE, LRN_ALPHA, LRN_BETA, LRN_K = 5, 1e-4, 0.75, 2.0


class TorchAlexNet(nn.Module):
  """The paper's AlexNet on NCHW float images; `forward` returns float32 logits."""

  def __init__(self, num_classes: int = 1000, widths=(96, 256, 384, 384, 256, 4096),
               final_size: int = 6, dropout_rate: float = 0.5):
    super().__init__()
    c1, c2, c3, c4, c5, hidden = widths
    self.conv1 = nn.Conv2d(3, c1, 11, stride=4)
    self.conv2 = nn.Conv2d(c1, c2, 5, padding=2, groups=2)
    self.conv3 = nn.Conv2d(c2, c3, 3, padding=1)
    self.conv4 = nn.Conv2d(c3, c4, 3, padding=1, groups=2)
    self.conv5 = nn.Conv2d(c4, c5, 3, padding=1, groups=2)
    self.fc6 = nn.Linear(final_size * final_size * c5, hidden)
    self.fc7 = nn.Linear(hidden, hidden)
    self.fc8 = nn.Linear(hidden, num_classes)
    self.dropout_rate = dropout_rate

  @staticmethod
  def _lrn(x: torch.Tensor) -> torch.Tensor:
    # Within each GPU's half of the channels. torch averages the squares over the window,
    # so its alpha is the paper's times the window size (docs/alexnet.md, "Local response
    # normalisation").
    return torch.cat([F.local_response_norm(half, LRN_SIZE, LRN_ALPHA * LRN_SIZE, LRN_BETA,
                                            LRN_K) for half in x.chunk(2, dim=1)], dim=1)

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    x = F.max_pool2d(self._lrn(F.relu(self.conv1(x))), 3, 2)
    x = F.max_pool2d(self._lrn(F.relu(self.conv2(x))), 3, 2)
    x = F.relu(self.conv3(x))
    x = F.relu(self.conv4(x))
    x = F.max_pool2d(F.relu(self.conv5(x)), 3, 2)
    x = x.permute(0, 2, 3, 1).flatten(1)  # (h, w, c), the project's order
    x = F.dropout(F.relu(self.fc6(x)), self.dropout_rate, self.training)
    x = F.dropout(F.relu(self.fc7(x)), self.dropout_rate, self.training)
    return self.fc8(x)

  @classmethod
  def from_arrays(cls, arrays: dict[str, dict[str, np.ndarray]], num_classes: int = 1000,
                  dropout_rate: float = 0.5) -> TorchAlexNet:
    """A model holding the project's weights, `arrays[layer]['kernel' | 'bias']` in the
    project's layouts (`benchmarks.train_step.layer_arrays`), copied."""
    widths = tuple(arrays[f'conv{i}']['kernel'].shape[-1] for i in range(1, 6)) + (
        arrays['fc6']['kernel'].shape[1],)
    final_size = round((arrays['fc6']['kernel'].shape[0] / widths[4]) ** 0.5)
    model = cls(num_classes, widths, final_size, dropout_rate)
    with torch.no_grad():
      for layer in LAYERS:
        kernel = arrays[layer]['kernel']
        kernel = kernel.transpose(3, 2, 0, 1) if kernel.ndim == 4 else kernel.T
        getattr(model, layer).weight.copy_(torch.from_numpy(np.ascontiguousarray(kernel)))
        getattr(model, layer).bias.copy_(torch.from_numpy(np.array(arrays[layer]['bias'])))
    return model


def to_torch_images(images: np.ndarray) -> torch.Tensor:
  """(N, H, W, C) host images -> a contiguous NCHW tensor, PyTorch's default layout."""
  return torch.from_numpy(np.array(images)).permute(0, 3, 1, 2).contiguous()


def paper_sgd(model: nn.Module, learning_rate: float) -> torch.optim.Optimizer:
  """Momentum 0.9, weight decay 5e-4 on every parameter (the paper's; torch scales the
  velocity by the learning rate instead of the gradient, which differs only when it changes)."""
  return torch.optim.SGD(model.parameters(), lr=learning_rate, momentum=0.9,
                         weight_decay=5e-4, foreach=True)


def make_train_step(model: TorchAlexNet, optimizer: torch.optim.Optimizer,
                    mean_crop: torch.Tensor):
  """uint8 NCHW images, int64 labels -> loss: float conversion, mean subtraction, forward
  with dropout, cross-entropy, backward, the SGD update (what the project's step does)."""

  def step(images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    model.train()
    optimizer.zero_grad(set_to_none=True)
    loss = F.cross_entropy(model(images.float() - mean_crop), labels)
    loss.backward()
    optimizer.step()
    return loss.detach()

  return step


def make_eval_step(model: nn.Module, mean_crop: torch.Tensor):
  """uint8 NCHW images -> softmax probabilities, without gradients."""

  def step(images: torch.Tensor) -> torch.Tensor:
    model.eval()
    with torch.inference_mode():
      return F.softmax(model(images.float() - mean_crop), dim=-1)

  return step


def best_matmul_flops(sizes=(1024, 2048), repeats: int = 5) -> float:
  """The best float32 matmul rate PyTorch reaches here, FLOP/s (one of the peaks that
  `benchmarks.train_step` divides by)."""
  best = 0.0
  for n in sizes:
    a = torch.rand(n, n)
    best = max(best, 2 * n ** 3 / median_seconds(lambda: torch.mm(a, a), repeats))
  return best


def main() -> None:
  """Times the rebuild on the batch and weights that `benchmarks.train_step` saved, in a
  process of its own (so its threads and its peak memory are its own), and prints one JSON
  line of results last."""
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--inputs', required=True,
                      help='.npz with images (N, H, W, 3) uint8, labels, mean_crop (H, W, 3) '
                           'and <layer>/kernel, <layer>/bias arrays')
  parser.add_argument('--repeats', type=int, default=5)
  parser.add_argument('--no_compile', action='store_true', help='skip torch.compile')
  args = parser.parse_args()
  with np.load(args.inputs) as inputs:
    arrays = {layer: {name: inputs[f'{layer}/{name}'] for name in ('kernel', 'bias')}
              for layer in LAYERS}
    images = to_torch_images(inputs['images'])
    labels = torch.from_numpy(inputs['labels'].astype(np.int64))
    mean_crop = to_torch_images(inputs['mean_crop'][None])
  batch = images.shape[0]
  model = TorchAlexNet.from_arrays(arrays, num_classes=arrays['fc8']['kernel'].shape[1])
  results = {'torch_version': torch.__version__, 'threads': torch.get_num_threads(),
             'matmul_flops': best_matmul_flops()}
  train = make_train_step(model, paper_sgd(model, 1e-5), mean_crop)
  results['train_images_per_second'] = batch / median_seconds(
      lambda: train(images, labels), args.repeats)
  evaluate = make_eval_step(model, mean_crop)
  results['eval_images_per_second'] = batch / median_seconds(
      lambda: evaluate(images), args.repeats)
  results['peak_rss_bytes'] = peak_rss_bytes()
  if not args.no_compile:
    start = time.perf_counter()
    compiled = make_eval_step(torch.compile(model), mean_crop)
    compiled(images)
    results['compile_seconds'] = time.perf_counter() - start
    results['compiled_eval_images_per_second'] = batch / median_seconds(
        lambda: compiled(images), args.repeats)
  print(json.dumps(results))


if __name__ == '__main__':
  main()
