"""Default configuration: the paper's network on the embedded `shapes` data set, on a CPU.

    python train.py --config=configs/default.py --workdir=/tmp/alexnet_shapes

Hardware: 2 CPU cores (no accelerator): about 2 minutes, plus about 12 s the first time to
build `shapes` (3,000 training and 600 validation JPEGs, 6 classes).

Expected result: top-1 error 25.5% with the centre crop and 22.8% with 10 crops
(alexnet-evaluate --workdir=...), measured in one run (docs/performance.md); chance is 83.3%.
README "Results" has the curve.

Every other config imports this one and overrides what differs; any field can be overridden
on the command line as --config.FIELD=VALUE.
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.seed = 0

  # Data. `dataset` is a TFDS name (imagenet2012, fashion_mnist, ...), a prepared TFDS
  # directory (python -m alexnet_jax.commands.resize_dataset), folder:/path/to/root, or
  # 'shapes'.
  config.dataset = 'shapes'
  config.data_dir = ''  # TFDS data_dir; '' for TFDS's default (~/tensorflow_datasets)
  # Where the files a data set is prepared from are (the ImageNet tars, fashion_mnist's IDX
  # files); '' for <data_dir>/downloads/manual, fashion_mnist's /usr/share/datasets/fashion-mnist.
  config.manual_dir = ''
  config.train_split = 'train'
  config.eval_split = 'validation'
  config.num_classes = 0  # 0: the data set's; otherwise must equal it
  config.image_size = 67  # crop side; 0: the network's own (227 paper, 224 torchvision)
  config.resize_size = 76  # shorter side and centre square (the paper's 256)
  config.fast_decode = True  # JPEG DCT-domain downscaling before the resize
  config.cache = True  # keep this host's encoded training images in memory
  config.shuffle_buffer = 10_000
  config.mean = 'per_pixel'  # 'per_pixel' (paper), 'per_channel' or 'none'
  # Where the pixel statistics (mean image, RGB PCA) are cached; '' : next to the data.
  config.mean_cache_dir = ''
  # Divide the mean-subtracted pixels by each channel's standard deviation over the split.
  # Not in the paper (it feeds 0..255 minus the mean); He init needs unit-scale inputs.
  config.normalize_std = True
  config.lighting_std = 0.1  # PCA lighting noise (paper 4.1); 0 turns it off

  # Model.
  config.model = ml_collections.ConfigDict()
  config.model.variant = 'paper'  # 'paper', 'paper_ungrouped' or 'torchvision'
  config.model.dropout_rate = 0.5
  config.model.dtype = 'float32'  # or 'bfloat16': parameters and updates stay float32
  config.model.init = 'he'  # 'paper' (N(0, 0.01), biases 1) or 'he'
  config.model.grouped_conv = 'split'  # or 'xla'; same numbers, see docs/performance.md
  config.model.width = 1.0  # channel multiplier; 1.0 is the paper's network

  # Optimiser (alexnet_jax/training/optim.py): 'sgd', the paper's, or 'lars', layer-wise
  # rates for large batches (You et al. 2017).
  config.optimizer = 'sgd'
  config.lars_trust_coefficient = 0.001  # 'lars': the paper's eta
  config.batch_size = 64  # global, over all devices of all hosts
  config.num_epochs = 8
  config.num_train_steps = 0  # > 0 overrides num_epochs
  config.learning_rate = 0.01
  # The global batch learning_rate is meant for: > 0 scales it to batch_size by the linear
  # scaling rule (Goyal et al. 2017), learning_rate * batch_size / this; 0 takes it as given.
  config.learning_rate_batch_size = 0
  config.momentum = 0.9
  config.weight_decay = 5e-4
  config.lr_schedule = 'cosine'  # or 'plateau' (paper), 'steps', 'polynomial', 'constant'
  config.warmup_epochs = 0.0
  config.lr_drop_factor = 0.1  # 'steps' and 'plateau'
  config.lr_drop_epochs = (30, 60, 80)  # 'steps'
  config.plateau_patience = 2  # evaluations without improvement before a drop
  config.plateau_min_delta = 0.001  # an improvement is at least this much top-1 error
  config.plateau_max_drops = 3

  # Evaluation, logging and checkpoints.
  config.eval_batch_size = 0  # 0: batch_size
  config.ten_crop_eval = False  # the paper's 10-crop average (else the centre crop)
  config.log_every_steps = 20  # 0: once per epoch
  config.eval_every_steps = 0  # 0: once per epoch
  config.checkpoint_every_steps = 0  # 0: once per epoch
  config.keep_checkpoints = 2  # the latest few, besides the best
  config.keep_best_checkpoints = 1  # by evaluation top-1 error

  # Faults (docs/reliability.md).
  # Steps whose loss or gradients are NaN or infinite are never applied. With 0 the run stops
  # at the first; with N it skips (and counts) up to N of them and stops at the next.
  config.max_nonfinite_steps = 0
  # Several processes: how long one waits for a silent peer (missed heartbeats, the start-up
  # rendezvous, the exit barrier) before it stops with an error instead of hanging.
  config.peer_timeout_seconds = 120
  # A gs:// workdir's lease (run/workdir_lock.py): renewed every quarter of this, taken over
  # by the next run once no renewal has come for this long (a holder that died).
  config.workdir_lease_seconds = 60
  # Keep compiled steps on disk, so that a resumed or repeated run skips compilation.
  config.compilation_cache = True
  # '' : $JAX_COMPILATION_CACHE_DIR if set, else $XDG_CACHE_HOME/alexnet_jax/xla
  # (default ~/.cache/alexnet_jax/xla).
  config.compilation_cache_dir = ''
  return config
