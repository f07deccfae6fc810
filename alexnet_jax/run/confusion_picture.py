"""A checkpoint's confusion counts as a picture: a row per true class, a column per
predicted class, class names on both axes, each cell shaded by the share of its row (so that
a rare class's mistakes show as clearly as a common one's) and labelled with its count.
`alexnet-evaluate` writes it for data sets of up to evaluation.MAX_CONFUSION_CLASSES classes.
Needs matplotlib, which the rest of alexnet_jax does not.
"""

from __future__ import annotations

import numpy as np

from alexnet_jax import files

# Up to this many classes every cell is labelled with its count; beyond, the shading alone.
_LABELLED_CLASSES = 30


def confusion_figure(confusion: np.ndarray, class_names: list[str], title: str):
  """A matplotlib Figure of `confusion` (rows: labels, columns: predictions), not saved."""
  from matplotlib.figure import Figure
  confusion = np.asarray(confusion)
  classes = len(class_names)
  rows = confusion.sum(axis=1, keepdims=True)
  shares = np.divide(confusion, rows, out=np.zeros(confusion.shape), where=rows > 0)
  side = min(4 + 0.45 * classes, 40)
  figure = Figure(figsize=(side + 1.5, side), layout='constrained')
  axes = figure.subplots()
  shading = axes.imshow(shares, cmap='Blues', vmin=0, vmax=1)
  figure.colorbar(shading, ax=axes, shrink=0.8, label='share of the true class')
  axes.set_xticks(range(classes), class_names, rotation=90, fontsize='small')
  axes.set_yticks(range(classes), class_names, fontsize='small')
  axes.set_xlabel('predicted class')
  axes.set_ylabel('true class')
  axes.set_title(title, fontsize='medium')
  if classes <= _LABELLED_CLASSES:
    for (row, column), count in np.ndenumerate(confusion):
      if count:
        axes.text(column, row, str(count), ha='center', va='center', fontsize='x-small',
                  color='white' if shares[row, column] > 0.5 else 'black')
  return figure


def write_confusion_picture(path, confusion: np.ndarray, class_names: list[str],
                            title: str) -> None:
  """Draws `confusion_figure` into `path` (PNG unless its extension says otherwise)."""
  files.write_figure(path, confusion_figure(confusion, class_names, title))
