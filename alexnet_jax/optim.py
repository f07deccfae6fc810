"""The paper's optimiser and the learning-rate schedules.

The paper (section 5) updates every weight w with momentum 0.9 and weight decay 0.0005:

    v <- 0.9 v - 0.0005 lr w - lr dL/dw
    w <- w + v

The learning rate multiplies the gradient before it enters the velocity, so dividing it by
10 slows new steps without shrinking the momentum already built up (optax.sgd, which scales
the velocity, would shrink it at once).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax
from flax import struct

SCHEDULES = ('plateau', 'steps', 'cosine', 'constant')


class PaperSgdState(NamedTuple):
  velocity: optax.Params


def paper_sgd(momentum: float, weight_decay: float) -> optax.GradientTransformationExtraArgs:
  """The paper's SGD as an optax transformation; `update` takes `learning_rate=` each step.

  The update it returns is the new velocity v; apply it with `optax.apply_updates`. Weight
  decay applies to every parameter, biases included, as the paper's rule is written.
  """
  def init(params):
    return PaperSgdState(jax.tree.map(jnp.zeros_like, params))

  def update(grads, state, params, *, learning_rate, **unused_extra_args):
    velocity = jax.tree.map(
        lambda v, g, w: momentum * v - learning_rate * (weight_decay * w + g),
        state.velocity, grads, params)
    return velocity, PaperSgdState(velocity)

  return optax.GradientTransformationExtraArgs(init, update)


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
  constant: base.
  Every schedule ramps up linearly over the first `warmup_steps` (from base / warmup_steps).
  """
  if schedule not in SCHEDULES:
    raise ValueError(f'unknown lr_schedule {schedule!r}; choose one of {SCHEDULES}.')
  drop_at = jnp.asarray(sorted(drop_steps), jnp.int32).reshape(-1)

  def learning_rate(step, plateau_drops):
    step = jnp.asarray(step, jnp.int32)
    if schedule == 'plateau':
      lr = base * drop_factor ** plateau_drops.astype(jnp.float32)
    elif schedule == 'steps':
      lr = base * drop_factor ** jnp.sum(step >= drop_at).astype(jnp.float32)
    elif schedule == 'cosine':
      progress = jnp.minimum(step / max(total_steps, 1), 1.0)
      lr = base * 0.5 * (1.0 + jnp.cos(jnp.pi * progress))
    else:
      lr = jnp.asarray(base, jnp.float32)
    if warmup_steps > 0:
      lr = lr * jnp.minimum(1.0, (step + 1) / warmup_steps)
    return jnp.asarray(lr, jnp.float32)

  return learning_rate
