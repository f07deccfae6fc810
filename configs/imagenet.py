"""The paper's recipe on ImageNet (ILSVRC-2012), section 5 of Krizhevsky et al. 2012.

    python train.py --config=configs/imagenet.py --workdir=DIR
    python -m alexnet_jax.evaluate --workdir=DIR          # centre crop and 10 crops

Data: TFDS `imagenet2012`, prepared once from ILSVRC2012_img_train.tar and
ILSVRC2012_img_val.tar in <data_dir>/downloads/manual (or --config.manual_dir). Faster
input: convert once to 256x256 squares with `python -m alexnet_jax.resize_dataset` and pass
the printed --config.dataset=... line.

Hardware: one GPU or more, or a TPU slice (any number of hosts: run the same command on
every host with one shared DIR). 90 epochs of 10,009 steps of 128 images.

Expected result: the paper's 40.7% top-1 / 18.2% top-5 error with 10 crops on the
validation set (about 2 points more top-1 error with the centre crop). Not yet measured by
this project: README "Results" lists what has been.

Known trap: with the paper's init (N(0, 0.01), biases of 1) many reimplementations see the
loss stay at ln(1000) = 6.91 for thousands of steps. If it has not fallen below 6.8 after
5,000 steps, restart in a new DIR with --config.model.init=he --config.normalize_std=True.
"""

from alexnet_jax.configs import default


def get_config():
  config = default.get_config()
  config.dataset = 'imagenet2012'
  config.num_classes = 1000
  config.image_size = 0  # the variant's own: 227 for the paper net
  config.resize_size = 256
  config.cache = False  # 140 GB of JPEGs: read from disk every epoch
  config.normalize_std = False  # the paper feeds 0..255 minus the mean image
  config.model.init = 'paper'
  config.batch_size = 128
  config.num_epochs = 90
  config.learning_rate = 0.01
  config.lr_schedule = 'plateau'  # divide by 10 when validation error stops improving, 3 times
  config.plateau_patience = 2
  config.log_every_steps = 100
  config.checkpoint_every_steps = 2_000  # about 1/5 of an epoch; plus one after every evaluation
  return config
