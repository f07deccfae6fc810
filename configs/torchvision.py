"""torchvision's AlexNet recipe on ImageNet (ILSVRC-2012): the network of "One weird trick"
(Krizhevsky 2014) as torchvision.models.alexnet builds it, trained as torchvision's
reference scripts train it (references/classification, "AlexNet and VGG").

    python train.py --config=configs/torchvision.py --workdir=DIR
    python -m alexnet_jax.evaluate --workdir=DIR          # centre crop and 10 crops

Or, instead of training, torchvision's published weights (IMAGENET1K_V1) converted into a
workdir that evaluate and predict read like a trained run's (needs torch, CPU build enough):

    python -m alexnet_jax.convert_torchvision alexnet-owt-7be5be79.pth --workdir=DIR
    python -m alexnet_jax.evaluate --workdir=DIR

Data: TFDS `imagenet2012`, as configs/imagenet.py says (--config.data_dir,
--config.manual_dir, or --config.dataset=<a resize_dataset directory>).

What differs from torchvision's recipe: its training crops are RandomResizedCrop(224) (a
random 8%-100% of the area at a random aspect ratio, resized); this pipeline's are the
paper's random 224 crops of the 256 square, mirrored at random. Its init is PyTorch's default
(uniform, variance 1/(3 fan_in)); here He init. Its per-channel mean and standard deviation
are published constants; a training run here computes them from the training split, and the
converter writes torchvision's constants. SGD is the paper's (momentum and weight decay act
on the velocity, alexnet_jax/optim.py), which equals PyTorch's except right after a drop.

Hardware: one GPU or more, or a TPU slice (any number of hosts: run the same command on
every host with one shared DIR). 90 epochs of 5,004 steps of 256 images.

Expected result: torchvision's published figures for its weights, 56.522% top-1 / 79.066%
top-5 accuracy (43.48% / 20.93% error) with the centre crop on the validation set. The
centre crop is torchvision's (shorter side 256, centre 224), but the resize filter is this
pipeline's, not PIL's bilinear, which may move the converted weights' figure slightly. Neither
the converted weights nor a training run are measured by this project yet (there is no
ImageNet on its machines): README "Results" lists what has been.
"""

from alexnet_jax.configs import imagenet


def get_config():
  config = imagenet.get_config()
  config.model.variant = 'torchvision'
  config.image_size = 224
  config.model.init = 'he'
  config.mean = 'per_channel'
  config.normalize_std = True  # torchvision's transforms.Normalize(mean, std)
  config.lighting_std = 0.0  # torchvision has no PCA lighting noise
  config.batch_size = 256  # 32 on each of 8 GPUs
  config.learning_rate = 0.01  # the reference scripts' 0.1 is too high without batch norm
  config.weight_decay = 1e-4
  config.lr_schedule = 'steps'  # StepLR(step_size=30, gamma=0.1) over 90 epochs
  config.lr_drop_epochs = (30, 60)
  config.lr_drop_factor = 0.1
  return config
