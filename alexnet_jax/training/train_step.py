"""The jitted steps: train (forward, backward, paper SGD), evaluate, and the plateau check.

The network is an NNX module split once into a static graph and plain pytrees; each step
merges them inside `jax.jit`, so the compiled program sees only arrays (docs/design.md).
The train state is replicated over the one-axis `data` mesh and donated to the step; batches
(`alexnet_jax.model.batch`) are split over the mesh and turned into the network's input by
`model.normalization.Normalization`. No TensorFlow here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx, struct
from jax.sharding import Mesh

from alexnet_jax.model.batch import Batch
from alexnet_jax.model.network import AlexNet
from alexnet_jax.model.normalization import Normalization
from alexnet_jax.run.distributed import replicated
from alexnet_jax.training import optim


@struct.dataclass
class TrainState:
  step: jax.Array  # int32, steps taken
  params: nnx.State
  opt_state: optax.OptState
  plateau: optim.Plateau
  nonfinite_steps: jax.Array  # int32, steps not applied for a NaN or infinite loss or gradient


@dataclasses.dataclass(frozen=True)
class Network:
  """The model's static parts: its graph in training and in evaluation mode (dropout on or
  off), its non-parameter state (the dropout stream's initial key, unused by the steps,
  which pass their own keys) and the side of its input images."""
  train_graph: nnx.GraphDef
  eval_graph: nnx.GraphDef
  other_state: nnx.State
  image_size: int

  def model(self, params: nnx.State, *, train: bool) -> AlexNet:
    graph = self.train_graph if train else self.eval_graph
    return nnx.merge(graph, params, self.other_state, copy=True)


def start_state(params: nnx.State, optimizer: optax.GradientTransformation) -> TrainState:
  """Step 0's train state around `params`: zero velocity, fresh plateau bookkeeping."""
  return TrainState(step=jnp.array(0, jnp.int32), params=params,
                    opt_state=optimizer.init(params), plateau=optim.Plateau.start(),
                    nonfinite_steps=jnp.array(0, jnp.int32))


def init(build_model: Callable[[nnx.Rngs], AlexNet], optimizer: optax.GradientTransformation,
         seed: int, mesh: Mesh, *, shapes_only: bool = False) -> tuple[Network, TrainState]:
  """The network and its first train state, initialised from `seed` inside jit, so that every
  process makes the same replicated arrays without copying them between hosts.

  `shapes_only`: the state as jax.ShapeDtypeStructs (shapes, dtypes, shardings), for a
  checkpoint to be restored into, without drawing 61M random weights first.
  """
  abstract = nnx.eval_shape(lambda: build_model(nnx.Rngs(seed)))
  abstract.train()
  train_graph = nnx.graphdef(abstract)
  abstract.eval()
  eval_graph = nnx.graphdef(abstract)

  def create():
    model = build_model(nnx.Rngs(seed))
    _, params, other_state = nnx.split(model, nnx.Param, ...)
    return start_state(params, optimizer), other_state

  sharding = replicated(mesh)
  if shapes_only:
    # XLA drops the unused weight initialisation from this program.
    other_state = jax.jit(lambda: create()[1], out_shardings=sharding)()
    state = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=sharding),
                         jax.eval_shape(create)[0])
  else:
    state, other_state = jax.jit(create, out_shardings=sharding)()
  return Network(train_graph, eval_graph, other_state, abstract.image_size), state


def all_finite(loss: jax.Array, grads) -> jax.Array:
  """Whether the loss and every gradient element are finite (no NaN, no infinity)."""
  return jnp.isfinite(loss) & jnp.all(jnp.stack(
      [jnp.all(jnp.isfinite(g)) for g in jax.tree.leaves(grads)]))


def keep_if_finite(finite: jax.Array, new, old):
  """`new` if `finite`, else `old`, leaf by leaf. Elementwise, so that XLA fuses the choice
  into the update's own loop over the parameters."""
  return jax.tree.map(lambda n, o: jnp.where(finite, n, o), new, old)


def top1_top5_misses(scores: jax.Array, labels: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Per example: whether its label does not score highest, and whether it is not among the
  5 highest (among all classes where there are fewer): the top-1 and top-5 errors.

  The label's rank is the number of classes ranked ahead of it as `lax.top_k` ranks them (a
  NaN above every number, equal scores by class index): the same misses as top_k, without
  sorting every row of scores (a sort took 1% of the CPU eval step).
  """
  label_scores = jnp.take_along_axis(scores, labels[:, None], axis=-1)
  label_nan, nan = jnp.isnan(label_scores), jnp.isnan(scores)
  higher = ~label_nan & (nan | (scores > label_scores))
  equal = jnp.where(label_nan, nan, scores == label_scores)
  earlier = jnp.arange(scores.shape[-1]) < labels[:, None]
  rank = jnp.sum(higher | (equal & earlier), axis=-1)
  return rank >= 1, rank >= min(5, scores.shape[-1])


def make_train_step(network: Network, optimizer: optax.GradientTransformationExtraArgs,
                    learning_rate: Callable[[jax.Array, jax.Array], jax.Array],
                    normalization: Normalization, seed: int, mesh: Mesh):
  """state, batch -> state, metrics. Dropout keys come from (seed, step), so a resumed run
  draws the masks an uninterrupted one would.

  A step whose loss or gradients hold a NaN or an infinity is not applied: parameters and
  velocity stay as they were, the step counter advances (the batch is consumed) and
  `nonfinite_steps` counts it; metrics['finite'] says which happened. So no state the step
  returns, and no checkpoint of it, holds a NaN.
  """
  dropout_root = jax.random.fold_in(jax.random.key(seed), 1)

  def train_step(state: TrainState, batch: Batch):
    images = normalization.apply(batch, lighting=True, view_size=network.image_size)
    labels = batch['label']
    dropout_key = jax.random.fold_in(dropout_root, state.step)

    def loss_fn(params):
      logits = network.model(params, train=True)(images, rngs=dropout_key)
      loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
      return loss, logits

    (loss, logits), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    lr = learning_rate(state.step, state.plateau.drops)
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params,
                                          learning_rate=lr)
    finite = all_finite(loss, grads)
    params, opt_state = keep_if_finite(
        finite, (optax.apply_updates(state.params, updates), opt_state),
        (state.params, state.opt_state))
    top1, top5 = top1_top5_misses(logits, labels)
    metrics = {'train_loss': loss, 'train_top1_error': jnp.mean(top1),
               'train_top5_error': jnp.mean(top5), 'learning_rate': lr, 'finite': finite}
    return state.replace(step=state.step + 1, params=params, opt_state=opt_state,
                         nonfinite_steps=state.nonfinite_steps + (~finite).astype(jnp.int32)
                         ), metrics

  return jax.jit(train_step, out_shardings=replicated(mesh), donate_argnums=0)


def make_eval_step(network: Network, normalization: Normalization, mesh: Mesh):
  """params, batch -> sums over the real (unmasked) examples: top-1 and top-5 misses, loss,
  count, and the confusion counts (label, predicted class), whose off-diagonal sum is the
  top-1 misses. Batches of 10 crops (B, 10, H, W, 3) are scored by their average softmax."""

  def eval_step(params: nnx.State, batch: Batch):
    images = normalization.apply(batch, lighting=False, view_size=network.image_size)
    views = images.reshape(-1, *images.shape[-3:])
    logits = network.model(params, train=False)(views)
    probs = jax.nn.softmax(logits).reshape(images.shape[0], -1, logits.shape[-1]).mean(1)
    labels, mask = batch['label'], batch['mask']
    top1, top5 = top1_top5_misses(probs, labels)
    label_prob = jnp.take_along_axis(probs, labels[:, None], axis=-1)[:, 0]
    return {'top1_misses': jnp.sum(top1 & mask), 'top5_misses': jnp.sum(top5 & mask),
            'loss_sum': jnp.sum(jnp.where(mask, -jnp.log(jnp.maximum(label_prob, 1e-30)), 0)),
            'count': jnp.sum(mask),
            # argmax takes the first of tied scores, as the rank count above does.
            'confusion': jnp.zeros((probs.shape[-1],) * 2, jnp.int32).at[
                labels, jnp.argmax(probs, axis=-1)].add(mask.astype(jnp.int32))}

  return jax.jit(eval_step, out_shardings=replicated(mesh))


def make_plateau_update(patience: int, max_drops: int, min_delta: float, mesh: Mesh):
  """state, eval top-1 error -> state with the plateau bookkeeping advanced (jitted, so
  the state stays a replicated global array on every process)."""

  def update(state: TrainState, error: jax.Array) -> TrainState:
    return state.replace(plateau=optim.plateau_update(
        state.plateau, error, patience=patience, max_drops=max_drops, min_delta=min_delta))

  return jax.jit(update, out_shardings=replicated(mesh), donate_argnums=0)


def first_layer_kernels(params: nnx.State) -> np.ndarray:
  """conv1's kernels as a host array (kh, kw, 3, n)."""
  return np.asarray(jax.device_get(params['conv1']['kernel'].get_value()))
