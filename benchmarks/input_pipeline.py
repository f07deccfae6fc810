"""Images per second of the training input pipeline against a PyTorch-style loader, on
generated ImageNet-like JPEGs, read as a folder and as a 256x256 copy.

    python -m benchmarks.input_pipeline [--images=1024] [--batch=128] [--workers=N]
                                        [--data_dir=DIR] [--repeats=1]

The first run writes `--images` JPEGs of about 500x375 (photograph-like spectrum, ~110 KB at
quality 90, as ImageNet's) to DIR/jpegs/train/<class>/ and converts them with
`alexnet_jax.resize_dataset.convert` to DIR/tfds256; later runs reuse both. It prints the
generation and conversion times, then images/s of:

    loader     worker processes doing what torchvision's ImageFolder and Resize(256),
               CenterCrop(256), RandomCrop(227), RandomHorizontalFlip() do, batches collated
               as DataLoader's workers do (the baseline)
    pipeline   `alexnet_jax.input_pipeline.train_dataset` on the JPEG folder
    converted  the same on the 256x256 copy

each over about one pass of the images after warm-up (the median of --repeats passes). The
last line is machine-readable: pipeline_vs_loader=1.70x converted_vs_loader=3.40x, ratios of
images/s (> 1: faster than the loader).
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
  # Older images would mix with the new ones, and their conversion would no longer match.
  shutil.rmtree(root, ignore_errors=True)
  shutil.rmtree(os.path.join(data_dir, 'tfds256'), ignore_errors=True)
  for label in range(CLASSES):
    os.makedirs(os.path.join(root, 'train', f'class_{label}'))
  start = time.perf_counter()
  with _SPAWN.Pool(workers) as pool:
    pool.map(_write_image, [(root, index) for index in range(images)], chunksize=8)
  with open(marker, 'w') as f:
    f.write(str(images))
  print(f'generated {images} JPEGs in {time.perf_counter() - start:.1f} s')
  return root


def convert(root: str, data_dir: str) -> str:
  """The 256x256 TFDS copy of the folder at `root`, converted (or finished) now."""
  from alexnet_jax.resize_dataset import convert as convert_source
  from alexnet_jax.sources import open_source

  start = time.perf_counter()
  path = convert_source(open_source('folder:' + root), os.path.join(data_dir, 'tfds256'),
                        splits=['train'], size=RESIZE_SIZE)
  # convert skips the shards an earlier run completed: a rerun's time is only a check.
  print(f'converted to {RESIZE_SIZE}x{RESIZE_SIZE} TFDS in {time.perf_counter() - start:.1f} s')
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


def time_passes(batches: Iterator, batches_per_pass: int, repeats: int) -> float:
  """Median seconds of `repeats` consecutive passes of `batches_per_pass` batches, after
  WARMUP_BATCHES (worker start-up, the shuffle buffer's first fill, autotuning)."""
  for _ in range(WARMUP_BATCHES):
    next(batches)
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    for _ in range(batches_per_pass):
      next(batches)
    times.append(time.perf_counter() - start)
  return statistics.median(times)


def time_loader(root: str, args: argparse.Namespace, batches_per_pass: int) -> float:
  paths, labels = image_folder(os.path.join(root, 'train'))
  rng = np.random.default_rng(0)
  count = args.batch * (WARMUP_BATCHES + batches_per_pass * args.repeats)
  # Reshuffled every epoch, as DataLoader(shuffle=True); batches run on across epochs, as the
  # pipeline's do after its repeat.
  order = np.concatenate([rng.permutation(len(paths))
                          for _ in range(-(-count // len(paths)))])[:count]
  tasks = enumerate(order.reshape(-1, args.batch))
  with _SPAWN.Pool(args.workers, _init_loader_worker, (paths, labels)) as pool:
    return time_passes(pool.imap(_load_batch, tasks), batches_per_pass, args.repeats)


def time_pipeline(dataset: str, args: argparse.Namespace, batches_per_pass: int) -> float:
  from alexnet_jax.input_pipeline import train_dataset
  from alexnet_jax.sources import open_source

  batches = train_dataset(open_source(dataset), 'train', batch_size=args.batch,
                          image_size=IMAGE_SIZE, resize_size=RESIZE_SIZE, seed=0)
  return time_passes(batches.as_numpy_iterator(), batches_per_pass, args.repeats)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--images', type=int, default=1024)
  parser.add_argument('--batch', type=int, default=128)
  parser.add_argument('--workers', type=int, default=os.cpu_count())
  parser.add_argument('--data_dir', help='default: <temp dir>/alexnet_jax_bench_jpegs-IMAGES')
  parser.add_argument('--repeats', type=int, default=1)
  args = parser.parse_args()
  data_dir = args.data_dir or os.path.join(tempfile.gettempdir(),
                                           f'alexnet_jax_bench_jpegs-{args.images}')

  root = generate(data_dir, args.images, args.workers)
  paths, _ = image_folder(os.path.join(root, 'train'))
  average_kb = sum(os.path.getsize(p) for p in paths) / len(paths) / 1e3
  print(f'{len(paths)} JPEGs averaging {average_kb:.0f} KB in {root}')
  converted = convert(root, data_dir)

  batches_per_pass = max(1, round(args.images / args.batch))
  print(f'batch {args.batch}, {batches_per_pass} batches a pass, median of {args.repeats}, '
        f'{os.cpu_count()} CPUs')
  images = batches_per_pass * args.batch
  rates = {
      'loader': images / time_loader(root, args, batches_per_pass),
      'pipeline': images / time_pipeline('folder:' + root, args, batches_per_pass),
      'converted': images / time_pipeline(converted, args, batches_per_pass),
  }
  descriptions = {'loader': f'PyTorch-style loader, {args.workers} workers',
                  'pipeline': 'train_dataset on the JPEG folder',
                  'converted': f'train_dataset on the {RESIZE_SIZE}x{RESIZE_SIZE} copy'}
  for method, rate in rates.items():
    print(f'{method:>9}: {rate:8.1f} images/s  ({descriptions[method]})')
  print(f'pipeline_vs_loader={rates["pipeline"] / rates["loader"]:.2f}x '
        f'converted_vs_loader={rates["converted"] / rates["loader"]:.2f}x')


if __name__ == '__main__':
  main()
