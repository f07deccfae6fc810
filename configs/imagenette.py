"""A Colab-sized run: the paper's network on Imagenette (10 easy ImageNet classes).

    python train.py --config=configs/imagenette.py --workdir=DIR

Data: TFDS `imagenette/320px` (9,469 training and 3,925 validation images, shorter side
320), downloaded by TFDS on first use: it needs the internet once (about 330 MB).

Hardware: a Colab GPU (T4) with its 2 CPU cores, where JPEG decoding limits the speed;
30 epochs of 73 steps of 128 images.

Expected result: well below the 90% top-1 error of chance; the figure on a T4 is not yet
measured by this project (README "Results" lists what has been).
"""

from alexnet_jax.configs import default


def get_config():
  config = default.get_config()
  config.dataset = 'imagenette/320px'
  config.num_classes = 10
  config.image_size = 0  # 227
  config.resize_size = 256
  config.cache = True  # the encoded images fit in memory: decode is then the only work
  config.batch_size = 128
  config.num_epochs = 30
  config.learning_rate = 0.01
  config.lr_schedule = 'cosine'
  config.warmup_epochs = 1.0
  config.log_every_steps = 20
  return config
