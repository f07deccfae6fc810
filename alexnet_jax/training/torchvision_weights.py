"""torchvision's pretrained AlexNet as a workdir that `evaluate` and `predict` read unchanged.

    alexnet-convert-torchvision alexnet-owt-7be5be79.pth --workdir=DIR \\
        [--config=configs/torchvision.py] [--config.data_dir=...]
    alexnet-evaluate --workdir=DIR
    alexnet-predict --workdir=DIR IMAGE

The .pth is the state dict that torchvision.models.alexnet(weights='IMAGENET1K_V1') loads
(https://download.pytorch.org/models/alexnet-owt-7be5be79.pth). DIR then holds what a run of
configs/torchvision.py would leave there: config.json (the --config, so that evaluate finds
the data where its --config.data_dir says), normalization.npz (torchvision's per-channel mean
and standard deviation; the 1000 imagenet2012 class names, in the order torchvision's
outputs follow) and checkpoint 0 of the `torchvision` variant holding the weights. Reading
the .pth needs torch (its CPU build is enough); torchvision itself is not needed. Run it from
the repository root, as train.py: --config is a path there. The workdir it writes is then
self-contained, for evaluate and predict run anywhere.

Layouts: a conv weight (out, in, kh, kw) becomes a kernel (kh, kw, in, out), a linear weight
(out, in) becomes (in, out). torchvision flattens pool5 as (c, h, w) and this project as
(h, w, c), so fc6's input rows are permuted. torchvision's AdaptiveAvgPool2d((6, 6)) is the
identity on the 6x6 pool5 of a 224 input, hence a checkpoint of image size 224 only.
"""

from __future__ import annotations

import os
import pickle

import jax
import ml_collections
import numpy as np
from flax import nnx

from alexnet_jax.data import imagenet_classes
from alexnet_jax.errors import (ConfigError, MissingDataError, ModelMismatchError, UserError,
                                in_one_line)
from alexnet_jax.model import network as network_lib
from alexnet_jax.model.normalization import Normalization
from alexnet_jax.run import distributed, workdir_lock
from alexnet_jax.run.checkpoints import Checkpoints, RunRecord
from alexnet_jax.run.workdir import Workdir
from alexnet_jax.training import config_checks, optim, train_step

# Each layer's module in torchvision's AlexNet: features and classifier are nn.Sequentials
# whose ReLU, pooling and dropout entries have no parameters.
TORCHVISION_LAYERS = {
    'conv1': 'features.0', 'conv2': 'features.3', 'conv3': 'features.6', 'conv4': 'features.8',
    'conv5': 'features.10', 'fc6': 'classifier.1', 'fc7': 'classifier.4', 'fc8': 'classifier.6',
}
IMAGE_SIZE = 224  # where the AdaptiveAvgPool2d((6, 6)) this project leaves out is the identity


def torch_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
  """A kernel's shape in PyTorch's layout: (kh, kw, in, out) -> (out, in, kh, kw), and
  (in, out) -> (out, in)."""
  return (shape[-1], shape[-2], *shape[:-2])


def from_torch_layout(weight: np.ndarray) -> np.ndarray:
  """The inverse of `torch_shape`'s permutation, on the array."""
  return weight.transpose(*range(2, weight.ndim), 1, 0)


def read_state_dict(path: str) -> dict[str, object]:
  """The .pth's state dict, tensors as float32 numpy arrays."""
  if not os.path.isfile(path):
    raise MissingDataError(f'{path} does not exist: download torchvision\'s AlexNet weights, '
                           f'https://download.pytorch.org/models/alexnet-owt-7be5be79.pth, '
                           f'and name the file.')
  try:
    import torch
  except ImportError:
    raise UserError('reading a .pth needs PyTorch, which is not installed: pip install torch '
                    '(the CPU build is enough; torchvision is not needed).') from None
  try:
    # weights_only: a .pth is a pickle, and this refuses anything in it but tensors and
    # plain containers.
    state_dict = torch.load(path, map_location='cpu', weights_only=True)
  except pickle.UnpicklingError:  # what weights_only raises for anything else, damage too
    raise ModelMismatchError(
        f'{path} holds something other than tensors, or it is damaged: torch.load refused it '
        f'with weights_only=True. Convert a state dict, such as alexnet-owt-7be5be79.pth or '
        f'what torch.save(model.state_dict(), path) writes.') from None
  except Exception as error:  # noqa: BLE001  (torch raises several kinds for a bad file)
    raise ModelMismatchError(f'{path} is not a file that torch.save wrote, or it is damaged '
                             f'({type(error).__name__}: {in_one_line(error)})') from None
  if not isinstance(state_dict, dict):
    raise ModelMismatchError(f'{path} holds a {type(state_dict).__name__}, not a state dict '
                             f'(what torch.save(model.state_dict(), path) writes).')
  return {key: value.detach().float().numpy() if torch.is_tensor(value) else value
          for key, value in state_dict.items()}


def abstract_params(config: ml_collections.ConfigDict, num_classes: int) -> nnx.State:
  """The shapes and structure of the parameters that `train_step.init` would make."""
  network = nnx.eval_shape(
      lambda: network_lib.from_config(config, num_classes, nnx.Rngs(config.seed)))
  _, params, _ = nnx.split(network, nnx.Param, ...)
  return params


def convert_params(state_dict: dict[str, object], like: nnx.State, path: str) -> nnx.State:
  """torchvision's weights as this project's parameters, structured as `like`; a
  ModelMismatchError naming every missing, unexpected or misshapen entry if `state_dict`
  is not torchvision's AlexNet."""
  expected = {}
  for layer, module in TORCHVISION_LAYERS.items():
    expected[f'{module}.weight'] = torch_shape(like[layer]['kernel'].shape)
    expected[f'{module}.bias'] = tuple(like[layer]['bias'].shape)
  problems = [f'missing {key}' for key in expected if key not in state_dict]
  problems += [f'unexpected {key}' for key in state_dict if key not in expected]
  problems += [f'{key} is {np.shape(state_dict[key])}, not {shape}'
               for key, shape in expected.items()
               if key in state_dict and np.shape(state_dict[key]) != shape]
  if problems:
    num_classes = like['fc8']['bias'].shape[0]
    raise ModelMismatchError(f'{path} is not the state dict of torchvision\'s AlexNet with '
                             f'{num_classes} classes: {"; ".join(problems)}.')

  # fc6 is a 6x6 convolution over pool5, which torchvision flattens as (c, h, w) and this
  # project as (h, w, c): laid out as a conv kernel, (out, c, h, w) -> (h, w, c, out), its
  # rows come out in this project's order.
  channels = like['conv5']['kernel'].shape[-1]
  rows, hidden = like['fc6']['kernel'].shape
  side = round((rows // channels) ** 0.5)

  def converted(key_path, leaf) -> np.ndarray:
    layer, name = key_path[0].key, key_path[1].key
    module = TORCHVISION_LAYERS[layer]
    if name == 'bias':
      return state_dict[f'{module}.bias']
    weight = state_dict[f'{module}.weight']
    if layer == 'fc6':
      weight = weight.reshape(hidden, channels, side, side)
    return from_torch_layout(weight).reshape(leaf.shape)

  return jax.tree_util.tree_map_with_path(converted, like)


def check_config(config: ml_collections.ConfigDict, num_classes: int) -> None:
  config_checks.validate(config, jax.device_count())
  asked = (config.model.variant, network_lib.image_size(config), config.model.width)
  if asked != ('torchvision', IMAGE_SIZE, 1.0):
    raise ConfigError(
        f'torchvision\'s weights are of model.variant=\'torchvision\', image_size={IMAGE_SIZE}, '
        f'model.width=1.0, but the config asks for {asked[0]!r}, {asked[1]}, {asked[2]}: '
        f'use --config=configs/torchvision.py.')
  if config.num_classes not in (0, num_classes):
    raise ConfigError(f'config.num_classes={config.num_classes}, but torchvision\'s weights '
                      f'are of imagenet2012\'s {num_classes} classes: set it to 0 or '
                      f'{num_classes}.')


def convert(pth_path: str, workdir: str, config: ml_collections.ConfigDict) -> int:
  """Writes `workdir` from torchvision's state dict in `pth_path`, as a run of `config`
  (configs/torchvision.py, overrides allowed) would; returns the checkpoint's step."""
  workdir = Workdir(workdir)
  # A training run starting in it writes its run files only after its first restore.
  with workdir_lock.held_for_run(workdir.path, config.workdir_lease_seconds):
    return _convert_into(pth_path, workdir, config)


def _convert_into(pth_path: str, workdir: Workdir, config: ml_collections.ConfigDict) -> int:
  taken = workdir.holds_a_run()
  if taken:
    raise UserError(f'{workdir} already holds a run ({", ".join(taken)}); nothing was '
                    f'overwritten: convert into another --workdir.')
  class_names = imagenet_classes.wordnet_ids()
  check_config(config, len(class_names))
  state_dict = read_state_dict(pth_path)
  params = convert_params(state_dict, abstract_params(config, len(class_names)), pth_path)
  optimizer = optim.from_config(config)
  state = jax.device_put(train_step.start_state(params, optimizer),
                         distributed.replicated(distributed.data_mesh()))

  step = 0
  checkpoints = Checkpoints(workdir, keep=config.keep_checkpoints,
                            keep_best=config.keep_best_checkpoints)
  try:
    # The record of a training run that has read no data, so that alexnet-train can also
    # resume from it: fine-tuning torchvision's weights.
    checkpoints.save(step, state, RunRecord.start(network_lib.identity(config, len(class_names))))
    checkpoints.wait()
  finally:
    checkpoints.close()
  # Last, as a training run writes them after its first restore: inference.load looks for
  # these two first, so a conversion stopped midway is never taken for a complete one.
  workdir.write_run_files(config, Normalization.torchvision(config.resize_size), class_names)
  return step
