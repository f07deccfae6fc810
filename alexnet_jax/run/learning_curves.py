"""Learning curves of a training run, from its DIR/metrics.jsonl, as one PNG.

    alexnet-plot --workdir=DIR [--output=DIR/learning_curves.png]
    (or python -m alexnet_jax.run.learning_curves ...)

Three panels over the training step: train and eval loss; train and eval top-1 and top-5
error in percent, with the paper's ImageNet figures as reference lines; the learning rate
on a log scale. Works on a run that is still training, and on the metrics.jsonl of versions
that logged accuracies. Needs matplotlib, which the rest of alexnet_jax does not.
"""

from __future__ import annotations

import json

from alexnet_jax import files
from alexnet_jax.errors import DataError, MissingDataError, UserError
from alexnet_jax.run.metric_writer import with_current_names
from alexnet_jax.run.workdir import Workdir
# The paper's one-network errors on the ILSVRC-2012 validation set (Table 2), predicted from
# the average of 10 crops' softmax.
PAPER_ERRORS = {'top-1': 40.7, 'top-5': 18.2}


def read_metrics(workdir: str) -> list[dict]:
  """The records of DIR/metrics.jsonl in file order, with today's names
  (`metric_writer.METRICS`): train lines (step, train_loss, train_top1_error, ...) and eval
  lines (step, eval_top1_error, ...) are separate records, also where they share a step."""
  path = Workdir(workdir).metrics_file
  if not path.is_file():
    raise MissingDataError(f'{path} does not exist: pass the workdir of a training run '
                           '(alexnet-train --workdir), where it writes metrics.jsonl.')
  lines = path.read_text().splitlines(keepends=True)
  records = []
  for number, line in enumerate(lines, 1):
    try:
      record = json.loads(line)
    except ValueError:
      if number == len(lines) and not line.endswith('\n'):
        break  # the last line of a run still writing it, or one killed while it did
      record = None
    if not isinstance(record, dict) or not isinstance(record.get('step'), int):
      raise DataError(f'line {number} of {path} is not a JSON object with an integer "step": '
                      f'{line.strip()[:80]!r}')
    records.append(with_current_names(record))
  if not records:
    raise DataError(f'{path} is empty: the run has not logged a step yet (it logs every '
                    'config.log_every_steps steps).')
  return records


def _line(axes, records: list[dict], key: str, percent: bool = False, **style) -> None:
  """Plots `key` over the step from the records that have it (an error in percent); none
  where no record has it, so that the legend lists only what is drawn: runs logged before
  train top-5 existed have none."""
  points = [(r['step'], r[key]) for r in records if key in r]
  if points:
    steps, values = zip(*points)
    axes.plot(steps, [100 * v for v in values] if percent else values, **style)


def learning_curves(records: list[dict]):
  """A matplotlib Figure of three panels (loss; top-1 and top-5 error; learning rate) over
  the step, not saved. Each line carries a label: 'train loss', 'eval top-5', ..."""
  try:
    # The Figure class rather than pyplot: no backend or display is needed to draw and save
    # it, and a notebook shows it once, where it is returned.
    from matplotlib.figure import Figure
  except ImportError:
    raise UserError('matplotlib is not installed: pip install matplotlib') from None
  figure = Figure(figsize=(8, 10), layout='constrained')
  loss, errors, lr = figure.subplots(3, 1, sharex=True)
  train, evaluation = {'linewidth': 1}, {'linestyle': '--', 'marker': 'o', 'markersize': 4}

  _line(loss, records, 'train_loss', color='C0', label='train loss', **train)
  _line(loss, records, 'eval_loss', color='C0', label='eval loss', **evaluation)
  loss.set_ylabel('cross-entropy loss')
  loss.legend()

  for k, color in (('1', 'C0'), ('5', 'C1')):
    _line(errors, records, f'train_top{k}_error', percent=True, color=color,
          label=f'train top-{k}', **train)
    _line(errors, records, f'eval_top{k}_error', percent=True, color=color,
          label=f'eval top-{k}', **evaluation)
    paper = PAPER_ERRORS[f'top-{k}']
    errors.axhline(paper, color=color, linestyle=':', alpha=0.7,
                   label=f'paper top-{k}, ImageNet val, 10 crops: {paper}%')
  errors.set_ylabel('error (%)')
  errors.set_ylim(bottom=0)
  errors.legend(fontsize='small')

  _line(lr, records, 'learning_rate', color='C2', label='learning rate', **train)
  lr.set_yscale('log')
  lr.set_ylabel('learning rate')
  lr.set_xlabel('step')
  for axes in (loss, errors, lr):
    axes.grid(alpha=0.3)
  return figure


def write_plots(workdir: str, output: str | None = None) -> list[str]:
  """Draws DIR/metrics.jsonl's learning curves into `output` (DIR/learning_curves.png when
  None; the extension picks the format); returns the paths written."""
  figure = learning_curves(read_metrics(workdir))
  figure.suptitle(str(Workdir(workdir)), fontsize='medium')
  path = files.path(output) if output else Workdir(workdir).learning_curves_file
  files.write_figure(path, figure)
  return [str(path)]
