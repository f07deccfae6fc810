"""The paper's optimiser, LARS for large batches, and the learning-rate schedules.

The paper (section 5) updates every weight w with momentum 0.9 and weight decay 0.0005:

    v <- 0.9 v - 0.0005 lr w - lr dL/dw
    w <- w + v

The learning rate multiplies the gradient before it enters the velocity, so dividing it by
10 slows new steps without shrinking the momentum already built up (optax.sgd, which scales
the velocity, would shrink it at once). LARS (`lars`) keeps that order.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import optax
from flax import struct

SCHEDULES = ('plateau', 'steps', 'cosine', 'polynomial', 'constant')
OPTIMIZERS = ('sgd', 'lars')


def paper_sgd(momentum: float, weight_decay: float) -> optax.GradientTransformationExtraArgs:
  """The paper's SGD as an optax transformation; `update` takes `learning_rate=` each step.

  The update it returns is the new velocity v; apply it with `optax.apply_updates`. Weight
  decay applies to every parameter, biases included, as the paper's rule is written. The
  state is optax.chain's; the velocity is its optax.trace's.
  """
  # trace returns g + momentum * v, so with g = -lr (wd w + dL/dw) it is the paper's v.
  return optax.chain(optax.add_decayed_weights(weight_decay), _scale_by_minus_learning_rate(),
                     optax.trace(decay=momentum))


def lars(momentum: float, weight_decay: float,
         trust_coefficient: float) -> optax.GradientTransformationExtraArgs:
  """LARS (You, Gitman and Ginsburg 2017, arXiv:1708.03888, Algorithm 1) as an optax
  transformation; `update` takes `learning_rate=` each step, like `paper_sgd`'s.

  Each layer's weight w (a kernel: every parameter of more than one dimension) with gradient
  g gets its own rate from the norms of the whole tensor:

      local_lr = trust_coefficient * ||w|| / (||g|| + weight_decay * ||w||)
      v <- momentum v + learning_rate * local_lr * (g + weight_decay w)
      w <- w - v

  local_lr is 1 where ||w|| or ||g|| is 0 (optax's scale_by_trust_ratio does the same): a
  zero-initialised kernel would otherwise never move, and a zero gradient would leave only
  decay scaled by trust_coefficient / weight_decay.

  Biases (the 1-D parameters) get neither the trust ratio nor weight decay, as in MLPerf's
  and most LARS implementations: v <- momentum v + learning_rate * g. A bias's norm measures
  no layer's scale (this network's start at 0 or 1, and one at 0 would sit at the zero-norm
  fallback), so they take the global rate, which the linear scaling rule already sizes.

  Not optax.lars: its ratio is ||w|| / ||g + weight_decay w||, the norm of the decayed
  gradient, where the paper divides by ||g|| + weight_decay ||w|| (the two differ whenever g
  and w are not parallel), and it takes its rate from optax's step count, which cannot see
  the plateau drops in the train state. The state is optax.chain's, of the same structure as
  `paper_sgd`'s; the velocity is its optax.trace's.
  """
  return optax.chain(_scale_by_layer_trust_ratio(trust_coefficient, weight_decay),
                     _scale_by_minus_learning_rate(), optax.trace(decay=momentum))


def _scale_by_layer_trust_ratio(trust_coefficient: float,
                                weight_decay: float) -> optax.GradientTransformation:
  """g -> local_lr * (g + weight_decay w) for kernels, g for biases (see `lars`)."""
  def scale(g, w):
    if w.ndim < 2:
      return g
    w_norm, g_norm = jnp.linalg.norm(w), jnp.linalg.norm(g)
    ratio = jnp.where((w_norm > 0) & (g_norm > 0),
                      trust_coefficient * w_norm / (g_norm + weight_decay * w_norm), 1.0)
    return ratio * (g + weight_decay * w)

  def update(updates, state, params=None):
    if params is None:
      raise ValueError('LARS needs the parameters: update(grads, state, params, ...).')
    return jax.tree.map(scale, updates, params), state

  return optax.GradientTransformation(optax.init_empty_state, update)


def from_config(config) -> optax.GradientTransformationExtraArgs:
  """The optimiser `config.optimizer` names ('sgd': `paper_sgd`; 'lars': `lars`), with the
  config's momentum, weight decay and trust coefficient."""
  # A config.json written before config.optimizer existed is a run of the paper's SGD.
  name = config.get('optimizer', 'sgd')
  if name == 'sgd':
    return paper_sgd(config.momentum, config.weight_decay)
  if name == 'lars':
    return lars(config.momentum, config.weight_decay, config.lars_trust_coefficient)
  raise ValueError(f'unknown optimizer {name!r}; choose one of {OPTIMIZERS}.')


def base_learning_rate(config) -> float:
  """The rate the schedule starts from (reached after warmup): `config.learning_rate`, or,
  when `config.learning_rate_batch_size` names the global batch it was set for, that rate
  scaled to `config.batch_size` by the linear scaling rule (Goyal et al. 2017):
  learning_rate * batch_size / learning_rate_batch_size. 0 takes it as given."""
  if config.learning_rate_batch_size:
    return config.learning_rate * config.batch_size / config.learning_rate_batch_size
  return config.learning_rate


def _scale_by_minus_learning_rate() -> optax.GradientTransformationExtraArgs:
  """Multiplies by -learning_rate, passed to each update: the rate is the train state's
  schedule of (step, plateau drops), which optax's count-only schedules cannot see."""
  def update(updates, state, params=None, *, learning_rate, **unused_extra_args):
    del params
    return jax.tree.map(lambda g: -learning_rate * g, updates), state

  return optax.GradientTransformationExtraArgs(optax.init_empty_state, update)


@struct.dataclass
class Plateau:
  """Divide-on-plateau bookkeeping, kept in the train state so that it is checkpointed."""
  best_error: jax.Array  # float32, the lowest evaluation error so far
  evals_since_best: jax.Array  # int32
  drops: jax.Array  # int32, learning-rate divisions so far

  @classmethod
  def start(cls) -> Plateau:
    return cls(jnp.array(jnp.inf, jnp.float32), jnp.array(0, jnp.int32),
               jnp.array(0, jnp.int32))


def plateau_update(plateau: Plateau, error: jax.Array, *, patience: int, max_drops: int,
                   min_delta: float) -> Plateau:
  """After an evaluation: drop once the error has not beaten the best by `min_delta` for
  `patience` evaluations in a row, at most `max_drops` times in all."""
  improved = error < plateau.best_error - min_delta
  since = jnp.where(improved, 0, plateau.evals_since_best + 1)
  drop = (since >= patience) & (plateau.drops < max_drops)
  return Plateau(best_error=jnp.minimum(plateau.best_error, error).astype(jnp.float32),
                 evals_since_best=jnp.where(drop, 0, since).astype(jnp.int32),
                 drops=(plateau.drops + drop).astype(jnp.int32))


def learning_rate_schedule(
    schedule: str, base: float, *, total_steps: int, warmup_steps: int = 0,
    drop_steps: Sequence[int] = (), drop_factor: float = 0.1,
) -> Callable[[jax.Array, jax.Array], jax.Array]:
  """lr(step, plateau_drops), for `step` counted from 0.

  plateau: base * drop_factor ** plateau_drops (drops decided by `plateau_update`).
  steps: base * drop_factor ** (how many of `drop_steps` are <= step).
  cosine: base * (1 + cos(pi * step / total_steps)) / 2.
  polynomial: base * (1 - step / total_steps) ** 2, the decay You et al. ran LARS with.
  constant: base.
  Every schedule ramps up linearly over the first `warmup_steps` (from base / warmup_steps).
  """
  if schedule not in SCHEDULES:
    raise ValueError(f'unknown lr_schedule {schedule!r}; choose one of {SCHEDULES}.')
  if schedule == 'steps':
    # A step listed twice drops twice; a dict holds it once, so with the product of its drops.
    drops = collections.Counter(int(s) for s in drop_steps)
    by_step = optax.piecewise_constant_schedule(
        base, {s: drop_factor ** n for s, n in drops.items()})
  elif schedule == 'cosine':
    by_step = optax.cosine_decay_schedule(base, max(total_steps, 1))
  elif schedule == 'polynomial':
    by_step = optax.polynomial_schedule(base, 0.0, 2, max(total_steps, 1))
  else:
    by_step = optax.constant_schedule(base)
  # The factor (step + 1) / warmup_steps, reaching 1 at step warmup_steps - 1.
  warmup = (optax.linear_schedule(1 / warmup_steps, 1.0, warmup_steps - 1)
            if warmup_steps > 1 else optax.constant_schedule(1.0))

  def learning_rate(step, plateau_drops):
    step = jnp.asarray(step, jnp.int32)
    lr = by_step(step)
    if schedule == 'plateau':
      lr = lr * drop_factor ** plateau_drops.astype(jnp.float32)
    return jnp.asarray(lr * warmup(step), jnp.float32)

  return learning_rate
