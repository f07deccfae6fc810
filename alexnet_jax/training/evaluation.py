"""Evaluation: the top-1 and top-5 error of parameters on a split (`evaluate_split`, which the
training loop runs too), and of a checkpoint with the centre crop and the paper's 10 crops
(`evaluate_checkpoint`, what `alexnet-evaluate` prints and writes).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from absl import logging

from alexnet_jax import files
from alexnet_jax.data import input_pipeline, sources
from alexnet_jax.model import network
from alexnet_jax.run import distributed
from alexnet_jax.run.confusion_picture import write_confusion_picture
from alexnet_jax.run.workdir import Workdir
from alexnet_jax.training import inference, train_step

VIEWS = {'centre': 'centre crop', 'ten_crop': '10 crops'}
# Up to this many classes a checkpoint's evaluation keeps the confusion counts and draws them
# (10,000 cells; ImageNet's million would be neither readable nor small).
MAX_CONFUSION_CLASSES = 100


def evaluate_split(eval_step, params, source, config, mesh, *, ten_crop: bool,
                   per_class: bool = False,
                   stop_requested: Callable[[], bool] | None = None) -> dict | None:
  """Top-1 and top-5 error, loss, the number of examples scored on config.eval_split and the
  number that could not be decoded (all processes together). With `per_class`, also each
  class's examples and top-1 error ('per_class') and, for up to MAX_CONFUSION_CLASSES
  classes, the confusion counts ('confusion': a row per label, a column per prediction).
  None once `stop_requested()` says so, which is asked before each batch: a stop need not
  wait for the rest of the split (on ImageNet, minutes of decoding)."""
  batches = input_pipeline.eval_batches(
      source, config.eval_split,
      batch_size=distributed.host_batch_size(config.eval_batch_size or config.batch_size),
      image_size=network.image_size(config), resize_size=config.resize_size,
      ten_crop=ten_crop, fast_decode=config.fast_decode, **distributed.hosts())
  totals = None
  for batch in batches:
    if stop_requested and stop_requested():
      return None
    sums = eval_step(params, distributed.global_batch(batch, mesh))
    totals = sums if totals is None else jax.tree.map(jnp.add, totals, sums)
  totals = jax.device_get(totals)
  confusion = np.asarray(totals.pop('confusion'), np.int64)
  totals = {name: value.item() for name, value in totals.items()}
  count = max(totals['count'], 1)
  result = {'eval_top1_error': totals['top1_misses'] / count,
            'eval_top5_error': totals['top5_misses'] / count,
            'eval_loss': totals['loss_sum'] / count, 'eval_examples': totals['count'],
            'eval_skipped': source.num_examples(config.eval_split) - totals['count']}
  if per_class:
    result['per_class'] = class_errors(confusion, source.class_names)
    if len(confusion) <= MAX_CONFUSION_CLASSES:
      result['confusion'] = confusion.tolist()
  return result


def class_errors(confusion: np.ndarray, class_names: list[str]) -> list[dict]:
  """Each class's examples and top-1 error (None for a class the split does not show), in
  label order, from the confusion counts."""
  examples = confusion.sum(axis=1)
  return [{'class': name, 'examples': int(n),
           'top1_error': float(1 - confusion[label, label] / n) if n else None}
          for label, (name, n) in enumerate(zip(class_names, examples))]


def evaluate_checkpoint(workdir: str, step: int | str | None = None,
                        split: str | None = None) -> dict:
  """{'centre': metrics, 'ten_crop': metrics, 'step': step, 'class_names': [...]} of
  checkpoint `step` (a number, 'best', or None for the latest); each view's metrics with
  its per-class errors (`evaluate_split`)."""
  trained = inference.load(workdir, step)
  config = trained.config
  if split:
    config.eval_split = split
  source = sources.open_configured(config)
  eval_step = train_step.make_eval_step(trained.network, trained.normalization, trained.mesh)
  results = {view: evaluate_split(eval_step, trained.params, source, config, trained.mesh,
                                  ten_crop=view == 'ten_crop', per_class=True)
             for view in VIEWS}
  results['class_names'] = source.class_names
  results['step'] = trained.step
  return results


def report(results: dict, workdir: str) -> str:
  """`evaluate_checkpoint`'s results as lines of top-1 and top-5 error."""
  lines = [f'checkpoint {results["step"]} of {workdir}:']
  for view, label in VIEWS.items():
    r = results[view]
    lines.append(f'  {label:<11}  top-1 error {100 * r["eval_top1_error"]:6.2f}%  '
                 f'top-5 error {100 * r["eval_top5_error"]:6.2f}%  '
                 f'({r["eval_examples"]} examples)')
  return '\n'.join(lines)


def write_results(results: dict, workdir: str) -> list[str]:
  """Writes `evaluate_checkpoint`'s results to DIR/eval-<step>.json and, where they hold
  confusion counts, the centre crop's as DIR/confusion-<step>.png (without matplotlib, a
  warning instead); returns the paths written."""
  workdir = Workdir(workdir)
  written = [workdir.eval_file(results['step'])]
  files.write_json(written[0], results, indent=2)
  if 'confusion' in results['centre']:
    path = workdir.confusion_file(results['step'])
    try:
      write_confusion_picture(path, results['centre']['confusion'], results['class_names'],
                              f'checkpoint {results["step"]} of {workdir}, centre crop')
      written.append(path)
    except ImportError:
      logging.warning('matplotlib is not installed, so %s was not drawn: pip install '
                      'matplotlib, then run alexnet-evaluate again.', path)
  return [str(path) for path in written]
