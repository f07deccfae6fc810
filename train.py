"""Command line: python train.py --config=configs/default.py [--config.FIELD=VALUE ...]

The training loop is not written yet: for now this builds the configured network and prints
its layer table (shapes, parameters, multiply-adds).
"""

import jax.numpy as jnp
from absl import app
from flax import nnx
from ml_collections import config_flags

from alexnet_jax.model import AlexNet, format_table

_CONFIG = config_flags.DEFINE_config_file('config', 'configs/default.py', 'Configuration file.')


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  config = _CONFIG.value.model
  model = nnx.eval_shape(lambda: AlexNet(
      config.variant, config.num_classes, config.image_size or None, config.dropout_rate,
      jnp.dtype(config.dtype), init=config.init, grouped_conv=config.grouped_conv,
      rngs=nnx.Rngs(0)))
  print(format_table(model))
  print('\nTraining is not implemented yet: this command prints the configured network.')


if __name__ == '__main__':
  app.run(main)
