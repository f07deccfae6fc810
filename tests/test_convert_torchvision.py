"""torchvision's AlexNet weights, converted into a workdir, give torchvision's logits through
`inference.load`, with torchvision's normalisation and class order; a missing torch, a
foreign state dict and an occupied workdir are refused with messages that say what to do."""

import sys

import jax
import numpy as np
import pytest

pytest.importorskip('ml_collections')  # absent on accelerator machines with only jax
tfds = pytest.importorskip('tensorflow_datasets')  # the class names are imagenet2012's
torch = pytest.importorskip('torch', reason='reading a .pth needs requirements-bench.txt')
from torch import nn  # noqa: E402

from alexnet_jax import files
from alexnet_jax.errors import ModelMismatchError, UserError
from alexnet_jax.training import inference, torchvision_weights
from benchmarks.pytorch_alexnet import to_torch_images  # noqa: E402
from configs import torchvision as torchvision_config  # noqa: E402

# torchvision's transforms.Normalize for its ImageNet weights, written out independently of
# the converter's copy.
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


class TorchvisionAlexNet(nn.Module):
  """torchvision.models.alexnet's modules, so that its state dict has torchvision's keys
  (torchvision itself is not installed)."""

  def __init__(self, num_classes: int = 1000):
    super().__init__()
    self.features = nn.Sequential(
        nn.Conv2d(3, 64, 11, 4, 2), nn.ReLU(), nn.MaxPool2d(3, 2),
        nn.Conv2d(64, 192, 5, padding=2), nn.ReLU(), nn.MaxPool2d(3, 2),
        nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(),
        nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(),
        nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(), nn.MaxPool2d(3, 2))
    self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
    self.classifier = nn.Sequential(
        nn.Dropout(), nn.Linear(9216, 4096), nn.ReLU(),
        nn.Dropout(), nn.Linear(4096, 4096), nn.ReLU(), nn.Linear(4096, num_classes))

  def forward(self, x):
    return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


@pytest.fixture(scope='module')
def torch_model():
  """Random weights, He-scaled so that every layer's activations stay of order 1: all-zero
  ReLUs would hide a misplaced weight."""
  torch.manual_seed(0)
  model = TorchvisionAlexNet()
  with torch.no_grad():
    for module in model.modules():
      if isinstance(module, (nn.Conv2d, nn.Linear)):
        module.weight.normal_(0.0, (2.0 / module.weight[0].numel()) ** 0.5)
        module.bias.normal_(0.0, 0.1)
  return model.eval()


@pytest.fixture(scope='module')
def state_dict_path(torch_model, tmp_path_factory):
  path = tmp_path_factory.mktemp('weights') / 'alexnet.pth'
  torch.save(torch_model.state_dict(), path)
  return str(path)


def test_converted_checkpoint_gives_torchvisions_logits(torch_model, state_dict_path,
                                                        tmp_path):
  config = torchvision_config.get_config()
  torchvision_weights.convert(state_dict_path, str(tmp_path), config)
  trained = inference.load(str(tmp_path))
  assert trained.step == 0
  assert (trained.config.model.variant, trained.config.image_size) == ('torchvision', 224)
  with files.temp_dir_removed_after():  # where the unprepared builder leaves a directory
    assert trained.class_names == tfds.builder('imagenet2012').info.features['label'].names
  assert trained.class_names[:2] == ['n01440764', 'n01443537']  # tench, goldfish

  # The centre crop of the resized square, as evaluate and predict take it.
  size, offset = 224, (config.resize_size - 224) // 2
  images = np.random.default_rng(0).integers(0, 256, (2, size, size, 3), np.uint8)
  batch = {'image': images, 'crop_offset': np.full((2, 2), offset, np.int32),
           'flipped': np.zeros(2, bool)}

  @jax.jit
  def logits(params, batch):
    images = trained.normalization.apply(batch, lighting=False, view_size=size)
    return trained.network.model(params, train=False)(images)

  got = np.asarray(logits(trained.params, batch))
  with torch.no_grad():
    pixels = to_torch_images(images).float() / 255
    normalized = (pixels - torch.tensor(MEAN)[:, None, None]) / torch.tensor(STD)[:, None, None]
    expected = torch_model(normalized).numpy()
  scale = np.abs(expected).max()
  assert scale > 1.0 and expected.std() > 0.1 * scale  # not a near-constant output
  np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5 * scale)


def test_missing_torch_names_the_fix(tmp_path, monkeypatch):
  pth = tmp_path / 'alexnet.pth'
  pth.write_bytes(b'')
  monkeypatch.setitem(sys.modules, 'torch', None)  # import torch fails
  with pytest.raises(UserError, match=r'^reading a \.pth needs PyTorch, which is not '
                                      r'installed: pip install torch \(the CPU build is '
                                      r'enough; torchvision is not needed\)\.$'):
    torchvision_weights.convert(str(pth), str(tmp_path / 'run'),
                                torchvision_config.get_config())


def test_missing_file_is_named(tmp_path):
  with pytest.raises(FileNotFoundError, match=r'nothing\.pth does not exist: download '):
    torchvision_weights.convert(str(tmp_path / 'nothing.pth'), str(tmp_path / 'run'),
                                torchvision_config.get_config())


@pytest.mark.parametrize('saved,message', [
    (b'PK\x03\x04 not a zip archive',
     r'alexnet\.pth is not a file that torch\.save wrote, or it is damaged \(RuntimeError: '
     r'PytorchStreamReader failed'),
    (nn.Linear(2, 2),  # a whole model, not its state dict
     r'alexnet\.pth holds something other than tensors, or it is damaged: torch\.load refused '
     r'it with weights_only=True\. Convert a state dict'),
])
def test_file_that_is_not_a_state_dict_is_refused(tmp_path, saved, message):
  pth = tmp_path / 'alexnet.pth'
  if isinstance(saved, bytes):
    pth.write_bytes(saved)
  else:
    torch.save(saved, pth)
  with pytest.raises(ModelMismatchError, match=message):
    torchvision_weights.convert(str(pth), str(tmp_path / 'run'), torchvision_config.get_config())


def test_state_dict_of_another_network_is_refused(torch_model, tmp_path):
  state_dict = dict(torch_model.state_dict())
  del state_dict['classifier.6.bias']
  state_dict['classifier.6.weight'] = torch.zeros(10, 4096)
  state_dict['fc.weight'] = torch.zeros(1)
  pth = tmp_path / 'other.pth'
  torch.save(state_dict, pth)
  with pytest.raises(ModelMismatchError) as error:
    torchvision_weights.convert(str(pth), str(tmp_path / 'run'),
                                torchvision_config.get_config())
  assert str(error.value) == (
      f"{pth} is not the state dict of torchvision's AlexNet with 1000 classes: missing "
      'classifier.6.bias; unexpected fc.weight; classifier.6.weight is (10, 4096), not '
      '(1000, 4096).')
  assert not (tmp_path / 'run').exists()


def test_occupied_workdir_is_refused_and_left_alone(state_dict_path, tmp_path):
  (tmp_path / 'checkpoints' / '1000').mkdir(parents=True)
  (tmp_path / 'config.json').write_text('{}')
  with pytest.raises(UserError, match=r"already holds a run \(config\.json, checkpoints\); "
                                      r'nothing was overwritten: convert into another '
                                      r'--workdir\.$'):
    torchvision_weights.convert(state_dict_path, str(tmp_path), torchvision_config.get_config())
  assert (tmp_path / 'config.json').read_text() == '{}'
  assert sorted(p.name for p in (tmp_path / 'checkpoints').iterdir()) == ['1000']
