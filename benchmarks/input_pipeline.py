"""Images per second of the training input pipeline on each kind of source, against a
PyTorch-style loader and against the JPEG decoding ceiling, on generated ImageNet-like JPEGs.

    python -m benchmarks.input_pipeline [--images=1024] [--batch=128] [--workers=N]
                                        [--data_dir=DIR] [--repeats=3]

The first run writes `--images` JPEGs of about 500x375 (photograph-like spectrum, ~110 KB at
quality 90, as ImageNet's) to DIR/jpegs/train/<class>/ and converts them with
`alexnet_jax.data.conversion.convert` to 256x256 squares, as JPEG (DIR/jpeg256) and as uint8
pixels (DIR/pixels256), in shards of 128 as ImageNet's conversion has many shards; later runs
reuse all three. It prints the generation and conversion times, then images/s of:

    loader           worker processes doing what torchvision's ImageFolder and Resize(256),
                     CenterCrop(256), RandomCrop(227), RandomHorizontalFlip() do, batches
                     collated as DataLoader's workers do (the baseline)
    pipeline         `alexnet_jax.data.input_pipeline.train_dataset` on the JPEG folder
    converted        the same on the JPEG conversion: the host decodes, the device crops
    converted_host   the same with the crops cut on the host (`crop_on_device=False`)
    pixels           the same on the pixel conversion: no decoding
    decode_ceiling   reading the JPEG conversion and `tf.io.decode_jpeg`, nothing else
    pixels_reading   reading the pixel conversion, nothing else
    pixels_records   its records as the pipeline reads them (`TfdsSource.records`), batched,
                     not parsed

each over about one pass of the images after warm-up (the median of --repeats passes, each
repeat building every method's pipeline in turn), and
from each, images/s per core of this machine and the cores one H200 needs at 30,000 images/s
(its bfloat16 train step at batch 512, benchmarks/results/). The last line is
machine-readable: pipeline_vs_loader=2.00x converted_vs_loader=6.00x
converted_vs_decode_ceiling=1.00x pixels_per_core=2000 (ratios of images/s; > 1: faster).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Iterator

import numpy as np
from PIL import Image, ImageDraw

IMAGE_SIZE, RESIZE_SIZE = 227, 256
CLASSES = 8
JPEG_QUALITY = 90
WARMUP_BATCHES = 2
EXAMPLES_PER_SHARD = 128
H200_IMAGES_PER_SECOND = 30_000  # bfloat16 train step, batch 512 (docs/performance.md)
CONVERSIONS = ('jpeg', 'pixels')
# Spawned, not forked: the loader's workers start after TensorFlow has started its threads in
# this process, and forking a threaded process can deadlock the child. Spawned workers import
# this module afresh, which is why TensorFlow (through alexnet_jax) is imported only inside the
# functions that time or convert, never at the top.
_SPAWN = multiprocessing.get_context('spawn')


def _pink_noise(rng: np.random.Generator, height: int, width: int, channels: int,
                exponent: float) -> np.ndarray:
  """Unit-variance noise whose amplitude spectrum falls as 1/f**exponent.

  Photographs fall about as 1/f; that sets how well a JPEG compresses and how long it takes
  to decode, where white noise would make both unrealistically large.
  """
  frequency = np.hypot(np.fft.fftfreq(height)[:, None], np.fft.rfftfreq(width)[None, :])
  frequency[0, 0] = np.inf  # no constant term: the caller sets the mean
  shape = (height, width // 2 + 1, channels)
  spectrum = (frequency ** -exponent)[..., None] * (rng.normal(size=shape)
                                                    + 1j * rng.normal(size=shape))
  field = np.fft.irfft2(spectrum, s=(height, width), axes=(0, 1))
  return field / field.std()


def _write_image(task: tuple[str, int]) -> None:
  """Writes generated image `index` to root/train/class_<index % CLASSES>/<index>.jpg.

  Smooth colour regions, a few flat shapes with sharp edges (objects), a 1/f luminance
  texture over everything and a little sensor noise.
  """
  root, index = task
  rng = np.random.default_rng(index)
  width, height = int(rng.integers(400, 601)), int(rng.integers(300, 451))
  if rng.random() < 0.25:
    width, height = height, width  # portrait
  colour = _pink_noise(rng, height, width, 3, 1.6) * 40 + rng.uniform(60, 190, 3)
  image = Image.fromarray(np.clip(colour, 0, 255).astype(np.uint8))
  draw = ImageDraw.Draw(image)
  for _ in range(int(rng.integers(3, 9))):
    fill = tuple(int(c) for c in rng.integers(0, 256, 3))
    left, right = sorted(rng.integers(0, width, 2).tolist())
    top, bottom = sorted(rng.integers(0, height, 2).tolist())
    shape = rng.integers(3)
    if shape == 0:
      draw.ellipse([left, top, right, bottom], fill=fill)
    elif shape == 1:
      draw.rectangle([left, top, right, bottom], fill=fill)
    else:
      corners = int(rng.integers(3, 7))
      draw.polygon(list(zip(rng.integers(0, width, corners).tolist(),
                            rng.integers(0, height, corners).tolist())), fill=fill)
  pixels = (np.asarray(image, np.float32) + _pink_noise(rng, height, width, 1, 1.0) * 40
            + rng.normal(0, 2, (height, width, 3)))
  path = os.path.join(root, 'train', f'class_{index % CLASSES}', f'{index:05d}.jpg')
  Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(path, quality=JPEG_QUALITY)


def generate(data_dir: str, images: int, workers: int) -> str:
  """The root of a folder data set of `images` generated JPEGs, written unless already there."""
  root = os.path.join(data_dir, 'jpegs')
  # Written last, holding the count: its absence means an interrupted or different run.
  marker = os.path.join(data_dir, 'jpegs.complete')
  if os.path.exists(marker):
    with open(marker) as f:
      if f.read() == str(images):
        return root
  # Older images would mix with the new ones, and their conversions would no longer match.
  shutil.rmtree(root, ignore_errors=True)
  for image_format in CONVERSIONS:
    shutil.rmtree(os.path.join(data_dir, f'{image_format}{RESIZE_SIZE}'), ignore_errors=True)
  for label in range(CLASSES):
    os.makedirs(os.path.join(root, 'train', f'class_{label}'))
  start = time.perf_counter()
  with _SPAWN.Pool(workers) as pool:
    pool.map(_write_image, [(root, index) for index in range(images)], chunksize=8)
  with open(marker, 'w') as f:
    f.write(str(images))
  print(f'generated {images} JPEGs in {time.perf_counter() - start:.1f} s')
  return root


def convert(root: str, data_dir: str, image_format: str) -> str:
  """The 256x256 TFDS copy of the folder at `root` in `image_format`, converted (or
  finished) now."""
  from alexnet_jax.data.conversion import convert as convert_source
  from alexnet_jax.data.sources import open_source

  start = time.perf_counter()
  path = convert_source(open_source('folder:' + root),
                        os.path.join(data_dir, f'{image_format}{RESIZE_SIZE}'),
                        splits=['train'], size=RESIZE_SIZE, image_format=image_format,
                        examples_per_shard=EXAMPLES_PER_SHARD)
  # convert skips the shards an earlier run completed: a rerun's time is only a check.
  megabytes = sum(entry.stat().st_size for entry in os.scandir(path)
                  if '.tfrecord-' in entry.name) / 1e6
  print(f'converted to {RESIZE_SIZE}x{RESIZE_SIZE} {image_format} in '
        f'{time.perf_counter() - start:.1f} s: {megabytes:.0f} MB')
  return path


def image_folder(root: str) -> tuple[list[str], np.ndarray]:
  """(paths, labels) as torchvision's ImageFolder lists them: sorted classes, sorted files."""
  classes = sorted(entry.name for entry in os.scandir(root) if entry.is_dir())
  paths, labels = [], []
  for label, name in enumerate(classes):
    class_dir = os.path.join(root, name)
    files = sorted(f for f in os.listdir(class_dir) if f.lower().endswith('.jpg'))
    paths += [os.path.join(class_dir, f) for f in files]
    labels += [label] * len(files)
  return paths, np.asarray(labels, np.int64)


# A loader worker's (paths, labels), sent once when it starts rather than with every batch.
_worker_files: tuple[list[str], np.ndarray] = ([], np.zeros(0, np.int64))


def _init_loader_worker(paths: list[str], labels: np.ndarray) -> None:
  global _worker_files
  _worker_files = paths, labels


def _load_batch(task: tuple[int, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
  """One batch as a DataLoader worker makes it: each image through ImageFolder's loader and
  the transforms, then the default collate (which DataLoader runs in the worker too)."""
  batch_index, indices = task
  paths, labels = _worker_files
  rng = np.random.default_rng(batch_index)
  images = []
  for index in indices:
    with open(paths[index], 'rb') as f:
      image = Image.open(f).convert('RGB')
    width, height = image.size
    # Resize(256): the shorter side to 256, the longer one truncated, as torchvision does.
    if width <= height:
      size = (RESIZE_SIZE, int(RESIZE_SIZE * height / width))
    else:
      size = (int(RESIZE_SIZE * width / height), RESIZE_SIZE)
    image = image.resize(size, Image.BILINEAR)
    left, top = round((size[0] - RESIZE_SIZE) / 2), round((size[1] - RESIZE_SIZE) / 2)
    image = image.crop((left, top, left + RESIZE_SIZE, top + RESIZE_SIZE))
    left, top = rng.integers(0, RESIZE_SIZE - IMAGE_SIZE + 1, 2)
    image = image.crop((left, top, left + IMAGE_SIZE, top + IMAGE_SIZE))
    if rng.random() < 0.5:
      image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    images.append(np.asarray(image))
  return np.stack(images), labels[indices]


def time_pass(batches: Iterator, batches_per_pass: int) -> float:
  """Seconds of one pass of `batches_per_pass` batches, after WARMUP_BATCHES (worker start-up,
  the shuffle buffer's first fill)."""
  for _ in range(WARMUP_BATCHES):
    next(batches)
  start = time.perf_counter()
  for _ in range(batches_per_pass):
    next(batches)
  return time.perf_counter() - start


def time_loader(root: str, args: argparse.Namespace, batches_per_pass: int) -> float:
  paths, labels = image_folder(os.path.join(root, 'train'))
  rng = np.random.default_rng(0)
  count = args.batch * (WARMUP_BATCHES + batches_per_pass)
  # Reshuffled every epoch, as DataLoader(shuffle=True); batches run on across epochs, as the
  # pipeline's do after its repeat.
  order = np.concatenate([rng.permutation(len(paths))
                          for _ in range(-(-count // len(paths)))])[:count]
  tasks = enumerate(order.reshape(-1, args.batch))
  with _SPAWN.Pool(args.workers, _init_loader_worker, (paths, labels)) as pool:
    return time_pass(pool.imap(_load_batch, tasks), batches_per_pass)


def time_pipeline(dataset: str, args: argparse.Namespace, batches_per_pass: int,
                  **settings) -> float:
  from alexnet_jax.data.input_pipeline import train_dataset
  from alexnet_jax.data.sources import open_source

  batches = train_dataset(open_source(dataset), 'train', batch_size=args.batch,
                          image_size=IMAGE_SIZE, resize_size=RESIZE_SIZE, seed=0, **settings)
  return time_pass(batches.as_numpy_iterator(), batches_per_pass)


def batched(examples, args: argparse.Namespace):
  """`examples` (an endless tf.data.Dataset) in batches, with the training pipeline's options:
  without them, tf.data would autotune this one alone."""
  from alexnet_jax.data.tensorflow_cpu import dataset_options, tf

  batches = examples.batch(args.batch, drop_remainder=True).prefetch(tf.data.AUTOTUNE)
  return batches.with_options(dataset_options())


def time_reading(dataset: str, args: argparse.Namespace, batches_per_pass: int) -> float:
  """Reading a conversion's images in batches, decoding JPEGs and nothing else: what no
  training pipeline on it can beat."""
  from alexnet_jax.data.sources import open_source
  from alexnet_jax.data.tensorflow_cpu import tf, without_autograph

  @without_autograph
  def decode(example):
    image = example['image']  # a pixel conversion's are uint8 already
    if image.dtype == tf.string:
      image = tf.io.decode_jpeg(image, channels=3)
    return image, example['label']

  source = open_source(dataset)
  decoded = source.read('train', 0, source.num_examples('train')).repeat().map(
      decode, num_parallel_calls=tf.data.AUTOTUNE)
  return time_pass(batched(decoded, args).as_numpy_iterator(), batches_per_pass)


def time_records(dataset: str, args: argparse.Namespace, batches_per_pass: int) -> float:
  """The conversion's serialized examples as the training pipeline reads them, in batches and
  not parsed: the cost of moving each image's bytes."""
  from alexnet_jax.data.sources import open_source

  source = open_source(dataset)
  records = source.records('train', 0, source.num_examples('train')).repeat()
  # Tensors, not numpy: as_numpy_iterator would copy each record into a Python bytes object,
  # which training never does (it gets numpy views of uint8 batches).
  return time_pass(iter(batched(records, args)), batches_per_pass)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--images', type=int, default=1024)
  parser.add_argument('--batch', type=int, default=128)
  parser.add_argument('--workers', type=int, default=os.cpu_count())
  parser.add_argument('--data_dir', help='default: <temp dir>/alexnet_jax_bench_jpegs-IMAGES')
  parser.add_argument('--repeats', type=int, default=3)
  args = parser.parse_args()
  data_dir = args.data_dir or os.path.join(tempfile.gettempdir(),
                                           f'alexnet_jax_bench_jpegs-{args.images}')

  root = generate(data_dir, args.images, args.workers)
  paths, _ = image_folder(os.path.join(root, 'train'))
  average_kb = sum(os.path.getsize(p) for p in paths) / len(paths) / 1e3
  print(f'{len(paths)} JPEGs averaging {average_kb:.0f} KB in {root}')
  jpeg, pixels = (convert(root, data_dir, image_format) for image_format in CONVERSIONS)

  batches_per_pass = max(1, round(args.images / args.batch))
  cores = len(os.sched_getaffinity(0))
  print(f'batch {args.batch}, {batches_per_pass} batches a pass, median of {args.repeats}, '
        f'{cores} cores')
  images = batches_per_pass * args.batch
  timings = {
      'loader': (lambda: time_loader(root, args, batches_per_pass),
                 f'PyTorch-style loader, {args.workers} workers'),
      'pipeline': (lambda: time_pipeline('folder:' + root, args, batches_per_pass),
                   'train_dataset on the JPEG folder'),
      'converted': (lambda: time_pipeline(jpeg, args, batches_per_pass),
                    'on the JPEG conversion, crops on the device'),
      'converted_host': (lambda: time_pipeline(jpeg, args, batches_per_pass,
                                               crop_on_device=False),
                         'on the JPEG conversion, crops on the host'),
      'pixels': (lambda: time_pipeline(pixels, args, batches_per_pass),
                 'on the pixel conversion, crops on the device'),
      'decode_ceiling': (lambda: time_reading(jpeg, args, batches_per_pass),
                         'read + tf.io.decode_jpeg of the JPEG conversion only'),
      'pixels_reading': (lambda: time_reading(pixels, args, batches_per_pass),
                         'read the pixel conversion only'),
      'pixels_records': (lambda: time_records(pixels, args, batches_per_pass),
                         'the pixel conversion\'s records, unparsed'),
  }
  # Each repeat builds every method's pipeline anew, in turn, so that a slow phase of a shared
  # machine slows one pass of each method rather than all passes of one.
  seconds = {method: [] for method in timings}
  for _ in range(args.repeats):
    for method, (time_method, _) in timings.items():
      seconds[method].append(time_method())
  rates = {method: images / statistics.median(times) for method, times in seconds.items()}
  print(f'{"":>14}  {"images/s":>9} {"per core":>9} {"cores per H200":>15}')
  for method, rate in rates.items():
    per_core = rate / cores
    print(f'{method:>14}: {rate:9.0f} {per_core:9.0f} {H200_IMAGES_PER_SECOND / per_core:15.1f}'
          f'  ({timings[method][1]})')
  print(f'pipeline_vs_loader={rates["pipeline"] / rates["loader"]:.2f}x '
        f'converted_vs_loader={rates["converted"] / rates["loader"]:.2f}x '
        f'converted_vs_decode_ceiling={rates["converted"] / rates["decode_ceiling"]:.2f}x '
        f'pixels_per_core={rates["pixels"] / cores:.0f}')


if __name__ == '__main__':
  main()
