"""Fashion-MNIST: the paper's network on a small real data set, on a CPU.

    python train.py --config=configs/fashion_mnist.py --workdir=/tmp/alexnet_fashion_mnist

Data: TFDS `fashion_mnist` (60,000 training and 10,000 test images, 28x28 grey, 10 classes),
prepared offline on first use (about 20 s) from Debian's package: sudo apt-get install
dataset-fashion-mnist (alexnet_jax/data/fashion_mnist.py).

Hardware: 2 CPU cores, no accelerator: 33 to 40 minutes (10 epochs of 468 steps of 128
images at about 300 images/s, and an evaluation of the test split after each epoch).

Expected result: test accuracy 0.912 (mean of seeds 0-2: 0.9136, 0.9128, 0.9102; top-1 error
8.8%), below the 0.94 aimed at; docs/performance.md#time-to-accuracy-on-fashion-mnist-2-cpu-cores gives each
seed's test accuracy (top-1, centre crop) and `python -m benchmarks.time_to_accuracy`
measures them.

The recipe was chosen on a validation split carved from the training images
(`--config.train_split='train[:90%]' --config.eval_split='train[90%:]'`, what
`benchmarks.time_to_accuracy --validation` runs); the test split gives the final figure
only. It keeps the paper's network (`paper`, width 1.0, LRN, grouped convolutions, dropout
0.5 in fc6 and fc7), SGD with momentum 0.9 and weight decay 5e-4, random crops and mirrors.
Where it departs from the paper (configs/imagenet.py), and why:

- Image size: 67x67 crops of the 72x72 image (the 28x28 image enlarged 2.57 times), not 227
  of 256. 67 is the smallest input the network takes (its stride-4 conv1 and three poolings
  leave 1x1 before fc6) and costs about a twelfth of 227 per image. 72 leaves crops 5 pixels
  of play, about 2 of the original's, the translation 28-pixel sets are usually trained with.
- Learning rate and schedule: 0.04 for batches of 128, one epoch of linear warmup, then a
  cosine decay to zero over the 10 epochs. Ten epochs leave no room for the paper's
  drops by ten at plateaus (about every 30 epochs). The warmup and the rate are the
  default config's, doubled with the batch and then some; not compared here with others.
- Weight decay 5e-4 and dropout 0.5: the paper's.
- Augmentation: no PCA lighting. On grey images the RGB covariance has rank one, so the
  paper's colour noise is only a change of brightness (data/pixel_stats.py).
- Label smoothing: none, as in the paper.
- Init: He (the default config's), not the paper's N(0, 0.01) with biases of 1, with inputs
  scaled by each channel's standard deviation (normalize_std, not in the paper).
"""

from alexnet_jax.configs import default


def get_config():
  config = default.get_config()
  config.dataset = 'fashion_mnist'
  config.train_split = 'train'
  config.eval_split = 'test'
  config.num_classes = 10
  config.image_size = 67
  config.resize_size = 72
  config.lighting_std = 0.0
  config.batch_size = 128
  config.num_epochs = 10
  config.learning_rate = 0.04
  config.lr_schedule = 'cosine'
  config.warmup_epochs = 1.0
  config.log_every_steps = 50
  return config
