"""The paper's optimiser against its update rule written out by hand, and the schedules."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from alexnet_jax import optim

MOMENTUM, WEIGHT_DECAY = 0.9, 5e-4


def paper_rule_by_hand(w0, grads, lrs):
  """v <- 0.9 v - 0.0005 lr w - lr g; w <- w + v, in float64 numpy (paper section 5)."""
  w = {k: v.astype(np.float64) for k, v in w0.items()}
  v = {k: np.zeros_like(x) for k, x in w.items()}
  for g, lr in zip(grads, lrs):
    for k in w:
      v[k] = MOMENTUM * v[k] - WEIGHT_DECAY * lr * w[k] - lr * g[k]
      w[k] = w[k] + v[k]
  return w


def run_transformation(tx, w0, grads, lrs, **extra):
  params = jax.tree.map(jnp.asarray, w0)
  state = tx.init(params)
  for g, lr in zip(grads, lrs):
    kwargs = {'learning_rate': lr} if extra.get('pass_lr') else {}
    updates, state = tx.update(jax.tree.map(jnp.asarray, g), state, params, **kwargs)
    params = optax.apply_updates(params, updates)
  return params


def test_paper_sgd_follows_the_paper_rule_across_a_learning_rate_drop():
  rng = np.random.default_rng(0)
  w0 = {'kernel': rng.normal(size=(5, 4)).astype(np.float32),
        'bias': np.ones(4, np.float32)}
  grads = [{k: rng.normal(size=x.shape).astype(np.float32) for k, x in w0.items()}
           for _ in range(12)]
  lrs = [0.01] * 6 + [0.001] * 6  # the paper's divide-by-10
  expected = paper_rule_by_hand(w0, grads, lrs)
  got = run_transformation(optim.paper_sgd(MOMENTUM, WEIGHT_DECAY), w0, grads, lrs,
                           pass_lr=True)
  for k in w0:
    np.testing.assert_allclose(got[k], expected[k], rtol=1e-6, atol=1e-7)

  # optax.sgd scales the velocity by the current rate, so after the drop it differs: the
  # reason the project does not use it.
  sgd = [optax.chain(optax.add_decayed_weights(WEIGHT_DECAY),
                     optax.sgd(lr, momentum=MOMENTUM)) for lr in (0.01, 0.001)]
  params = jax.tree.map(jnp.asarray, w0)
  states = sgd[0].init(params)
  for i, (g, lr) in enumerate(zip(grads, lrs)):
    updates, states = sgd[i >= 6].update(jax.tree.map(jnp.asarray, g), states, params)
    params = optax.apply_updates(params, updates)
  assert not np.allclose(params['kernel'], expected['kernel'], rtol=1e-3)


def test_paper_sgd_decays_weights_with_no_gradient():
  w0 = {'w': np.full(3, 2.0, np.float32)}
  zero = [{'w': np.zeros(3, np.float32)}] * 2
  got = run_transformation(optim.paper_sgd(MOMENTUM, WEIGHT_DECAY), w0, zero, [0.1, 0.1],
                           pass_lr=True)
  # step 1: v = -5e-5 * 2 = -1e-4, w = 1.9999; step 2: v = 0.9 v - 5e-5 w.
  v1 = -WEIGHT_DECAY * 0.1 * 2.0
  w1 = 2.0 + v1
  w2 = w1 + MOMENTUM * v1 - WEIGHT_DECAY * 0.1 * w1
  np.testing.assert_allclose(got['w'], np.full(3, w2), rtol=1e-7)


def lr_at(schedule, steps, drops=0):
  return [float(schedule(jnp.int32(s), jnp.int32(drops))) for s in steps]


def test_step_schedule_divides_at_the_drop_steps():
  schedule = optim.learning_rate_schedule('steps', 0.01, total_steps=100, drop_steps=(30, 60))
  np.testing.assert_allclose(lr_at(schedule, [0, 29, 30, 59, 60, 99]),
                             [0.01, 0.01, 0.001, 0.001, 1e-4, 1e-4], rtol=1e-6)


def test_cosine_schedule_with_warmup():
  schedule = optim.learning_rate_schedule('cosine', 0.1, total_steps=100, warmup_steps=10)
  got = lr_at(schedule, [0, 4, 9, 50, 100])
  expected = [0.1 * 0.5 * (1 + math.cos(math.pi * s / 100)) * min(1, (s + 1) / 10)
              for s in [0, 4, 9, 50, 100]]
  np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-9)
  assert got[0] == pytest.approx(0.01 * 0.5 * (1 + math.cos(0)), rel=1e-5)
  assert got[-1] == pytest.approx(0.0, abs=1e-9)


def test_plateau_schedule_follows_the_drop_count():
  schedule = optim.learning_rate_schedule('plateau', 0.01, total_steps=100)
  np.testing.assert_allclose([lr_at(schedule, [7], drops=d)[0] for d in range(4)],
                             [0.01, 0.001, 1e-4, 1e-5], rtol=1e-5)


def test_plateau_drops_after_patience_evaluations_without_improvement_at_most_max():
  plateau = optim.Plateau.start()
  drops = []
  # Improves, improves, then flat: with patience 2 a drop every second flat evaluation,
  # until three drops.
  for error in [0.9, 0.8, 0.8, 0.8, 0.85, 0.8, 0.7, 0.7, 0.7, 0.7, 0.7, 0.7, 0.7]:
    plateau = optim.plateau_update(plateau, jnp.float32(error), patience=2, max_drops=3,
                                   min_delta=0.001)
    drops.append(int(plateau.drops))
  assert drops == [0, 0, 0, 1, 1, 2, 2, 2, 3, 3, 3, 3, 3]
  assert float(plateau.best_error) == pytest.approx(0.7)


def test_unknown_schedule_names_the_choices():
  with pytest.raises(ValueError, match="unknown lr_schedule 'linear'.*plateau"):
    optim.learning_rate_schedule('linear', 0.01, total_steps=10)
