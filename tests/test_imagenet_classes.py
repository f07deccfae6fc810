"""ImageNet's class ids in the order models' outputs follow, and their words for `predict`."""

import pytest

pytest.importorskip('tensorflow_datasets')

from alexnet_jax.data import imagenet_classes


def test_wordnet_ids_are_the_sorted_ilsvrc_classes():
  ids = imagenet_classes.wordnet_ids()
  assert len(ids) == 1000 and ids == sorted(ids)
  # Output indices every ILSVRC-2012 model shares (torchvision's 0 tench, 281 tabby cat).
  assert (ids[0], ids[281], ids[999]) == ('n01440764', 'n02123045', 'n15075141')


def test_imagenet_classes_get_their_words_and_other_names_are_kept():
  ids = imagenet_classes.wordnet_ids()
  names = imagenet_classes.readable(ids)
  assert names[0] == 'tench, Tinca tinca (n01440764)'
  assert names[281] == 'tabby, tabby cat (n02123045)'
  assert names[999] == 'toilet tissue, toilet paper, bathroom tissue (n15075141)'
  shapes = ['circle', 'ring', 'square', 'triangle', 'cross', 'star']
  assert imagenet_classes.readable(shapes) == shapes
  # The same ids in another order are another data set's classes: words would be misplaced.
  assert imagenet_classes.readable(ids[::-1]) == ids[::-1]
