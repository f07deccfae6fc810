"""Converts a data set once to its 256x256 centre squares (alexnet_jax.data.conversion).

    alexnet-resize-dataset --dataset=imagenet2012 --manual_dir=/data/tars \\
        --output_dir=/data/imagenet2012_256 [--image_format=jpeg|pixels]
    (or python -m alexnet_jax.commands.resize_dataset ...)

Prints what it stored and the --config.dataset=... line that trains on it. Rerun the same
command to resume an interrupted conversion.
"""

from __future__ import annotations

from alexnet_jax.commands import launch

if __name__ == '__main__':  # python -m: under launch's Ctrl-C guard before the imports below
  launch.launch(__spec__.name)

from absl import flags

from alexnet_jax.commands import cli
from alexnet_jax.data.conversion import IMAGE_FORMATS, convert, read_record, summary
from alexnet_jax.data.sources import open_source


def define_flags() -> None:
  """The command's flags, defined only when it runs, so that importing `convert` defines none."""
  flags.DEFINE_string('dataset', None, 'Data set to convert: any spelling '
                      'alexnet_jax.data.sources.open_source accepts.', required=True)
  flags.DEFINE_string('output_dir', None, 'Directory of the converted data set; rerun with the '
                      'same one to resume.', required=True)
  flags.DEFINE_string('data_dir', None, 'TFDS data_dir of the source.')
  flags.DEFINE_string('manual_dir', None, 'Where the ImageNet tars are.')
  flags.DEFINE_list('splits', ['train', 'validation'], 'Splits to convert.')
  flags.DEFINE_integer('size', 256, 'Side of the stored squares.')
  flags.DEFINE_enum('image_format', 'jpeg', IMAGE_FORMATS, 'How the squares are stored: JPEG, '
                    'or uint8 pixels (no decoding when training, about 4x the size).')
  flags.DEFINE_integer('quality', 95, 'JPEG quality of the stored squares.')
  flags.DEFINE_integer('examples_per_shard', 1024, 'Source examples per output shard.')
  flags.DEFINE_bool('fast_decode', True, 'Decode large JPEGs at 1/2, 1/4 or 1/8 scale before '
                    'resizing (alexnet_jax.data.ops.decode_image).')


def main(argv):
  cli.no_arguments(argv)
  args = flags.FLAGS
  source = open_source(args.dataset, args.data_dir, args.manual_dir)
  path = convert(source, args.output_dir, splits=args.splits, size=args.size,
                 quality=args.quality, examples_per_shard=args.examples_per_shard,
                 fast_decode=args.fast_decode, image_format=args.image_format)
  print(summary(read_record(path)))
  print(f'To train on it: --config.dataset={path}')


def run():
  cli.run(main, define_flags)
