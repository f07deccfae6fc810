"""ImageNet's 1000 classes: their WordNet ids in the order every ILSVRC-2012 model's outputs
follow (TFDS imagenet2012's labels, torchvision's), and the words a reader knows them by.

Both come from files of the installed tensorflow_datasets package: nothing is downloaded and
TensorFlow is not imported.
"""

from __future__ import annotations

from alexnet_jax import files


def wordnet_ids() -> list[str]:
  """imagenet2012's class names, n01440764 (tench) ... n15075141 (toilet tissue): sorted
  WordNet ids, as a training run on it records them."""
  import tensorflow_datasets as tfds
  with files.temp_dir_removed_after():
    return list(tfds.builder('imagenet2012').info.features['label'].names)


def readable(class_names: list[str]) -> list[str]:
  """`class_names` with words where they are ImageNet's WordNet ids ('tench, Tinca tinca
  (n01440764)'); any other data set's names unchanged."""
  if len(class_names) != 1000 or not class_names[0].startswith('n0'):
    return list(class_names)
  # The standard class-index-to-words list, kept by TFDS for its siscore data set.
  from tensorflow_datasets.datasets.siscore.labels import IMAGENET_LABELS_LIST
  if list(class_names) != wordnet_ids():
    return list(class_names)
  return [f'{words} ({wnid})' for wnid, words in zip(class_names, IMAGENET_LABELS_LIST)]
