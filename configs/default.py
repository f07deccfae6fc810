"""Default configuration: the paper's network.

    python train.py --config=configs/default.py [--config.model.variant=torchvision]

Training fields (data, optimiser, schedule, checkpoints) arrive with the training loop; until
then `train.py` builds the configured network and prints its layer table.
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.seed = 0
  config.model = ml_collections.ConfigDict()
  config.model.variant = 'paper'  # 'paper', 'paper_ungrouped' or 'torchvision'
  config.model.num_classes = 1000
  config.model.image_size = 0  # 0: the variant's own (227 paper, 224 torchvision)
  config.model.dropout_rate = 0.5
  config.model.dtype = 'float32'  # or 'bfloat16': parameters stay float32
  config.model.init = 'paper'  # or 'he'
  config.model.grouped_conv = 'split'  # or 'xla'; same numbers, see README Performance
  return config
