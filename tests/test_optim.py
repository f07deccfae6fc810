"""The paper's optimiser against its update rule written out by hand, and the schedules."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from alexnet_jax.training import optim

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


TRUST = 0.001  # You et al.'s eta


def lars_rule_by_hand(w0, grads, lrs):
  """You et al. 2017, Algorithm 1, in float64 numpy. Each kernel: local_lr = eta ||w|| /
  (||g|| + wd ||w||) (1 where a norm is 0), v <- m v + lr local_lr (g + wd w), w <- w - v.
  Each bias: v <- m v + lr g. Returns the weights and the velocities."""
  w = {k: x.astype(np.float64) for k, x in w0.items()}
  v = {k: np.zeros_like(x) for k, x in w.items()}
  for g, lr in zip(grads, lrs):
    for k in w0:
      gk = g[k].astype(np.float64)
      if w[k].ndim > 1:
        w_norm, g_norm = np.sqrt(np.sum(w[k] ** 2)), np.sqrt(np.sum(gk ** 2))
        local_lr = (TRUST * w_norm / (g_norm + WEIGHT_DECAY * w_norm)
                    if w_norm > 0 and g_norm > 0 else 1.0)
        direction = local_lr * (gk + WEIGHT_DECAY * w[k])
      else:
        direction = gk
      v[k] = MOMENTUM * v[k] + lr * direction
      w[k] = w[k] - v[k]
  return w, v


def run_lars(w0, grads, lrs):
  """The project's LARS on float32 arrays: the weights and the velocity after each step."""
  tx = optim.lars(MOMENTUM, WEIGHT_DECAY, TRUST)
  params = jax.tree.map(jnp.asarray, w0)
  state = tx.init(params)
  for g, lr in zip(grads, lrs):
    updates, state = tx.update(jax.tree.map(jnp.asarray, g), state, params, learning_rate=lr)
    params = optax.apply_updates(params, updates)
  # optax.trace accumulates the negated updates: -v in the paper's notation.
  return params, jax.tree.map(lambda t: -t, state[-1].trace)


def lars_case():
  """A conv kernel, a dense kernel and a bias of different scales, and three steps of
  gradients whose norms differ by layer, as AlexNet's do (You et al., Table 1)."""
  rng = np.random.default_rng(1)
  w0 = {'conv': rng.normal(0, 0.01, size=(3, 3, 4, 8)).astype(np.float32),
        'dense': rng.normal(0, 0.5, size=(16, 10)).astype(np.float32),
        'bias': np.ones(10, np.float32)}
  scales = {'conv': 1e-4, 'dense': 0.2, 'bias': 0.05}
  grads = [{k: rng.normal(0, scales[k], size=x.shape).astype(np.float32)
            for k, x in w0.items()} for _ in range(3)]
  return w0, grads, [2.0, 2.0, 1.0]


def test_lars_follows_the_papers_rule_over_steps_where_momentum_counts():
  w0, grads, lrs = lars_case()
  expected_w, expected_v = lars_rule_by_hand(w0, grads, lrs)
  got_w, got_v = run_lars(w0, grads, lrs)
  for k in w0:
    # The velocity (the update itself) to float32's precision, and so the weights.
    np.testing.assert_allclose(got_v[k], expected_v[k], rtol=1e-5,
                               atol=1e-6 * np.abs(expected_v[k]).max(), err_msg=k)
    np.testing.assert_allclose(got_w[k], expected_w[k], rtol=1e-6, atol=1e-9, err_msg=k)
  # The trust ratio evens out the layers: a plain SGD step would move the dense kernel 40
  # times further, relative to its norm, than the conv kernel (0.92 and 0.023 at lr 2); LARS's
  # first step moves each by eta * lr = 0.002 of its norm, less the few percent that
  # ||g + wd w|| falls short of ||g|| + wd ||w||.
  first_w, _ = run_lars(w0, grads[:1], lrs[:1])
  for k in ('conv', 'dense'):
    relative = np.linalg.norm(first_w[k] - w0[k]) / np.linalg.norm(w0[k])
    assert 0.96 * TRUST * lrs[0] < relative <= TRUST * lrs[0] * (1 + 1e-6), k

  # optax.lars divides by ||g + wd w|| instead of ||g|| + wd ||w||: on the first step, where
  # momentum plays no part, its conv update is longer by the ratio of the two; the reason it
  # is not used.
  def not_bias(params):
    return {k: k != 'bias' for k in params}

  optax_lars = optax.lars(lrs[0], weight_decay=WEIGHT_DECAY, weight_decay_mask=not_bias,
                          trust_coefficient=TRUST, trust_ratio_mask=not_bias, momentum=MOMENTUM)
  params = jax.tree.map(jnp.asarray, w0)
  updates, _ = optax_lars.update(jax.tree.map(jnp.asarray, grads[0]), optax_lars.init(params),
                                 params)
  _, paper_v = lars_rule_by_hand(w0, grads[:1], lrs[:1])
  np.testing.assert_allclose(-updates['bias'], paper_v['bias'], rtol=1e-6)
  w, g = w0['conv'].astype(np.float64), grads[0]['conv'].astype(np.float64)
  longer = ((np.linalg.norm(g) + WEIGHT_DECAY * np.linalg.norm(w))
            / np.linalg.norm(g + WEIGHT_DECAY * w))
  assert longer > 1.03
  assert np.linalg.norm(updates['conv']) / np.linalg.norm(paper_v['conv']) == pytest.approx(
      longer, rel=1e-5)


def test_lars_zero_norms_take_a_trust_ratio_of_one():
  # A zero kernel with a gradient, a kernel with no gradient, and both zero.
  w0 = {'zero_kernel': np.zeros((2, 3), np.float32),
        'still_kernel': np.full((2, 3), 2.0, np.float32),
        'all_zero': np.zeros((2, 3), np.float32)}
  g = {'zero_kernel': np.full((2, 3), 0.5, np.float32),
       'still_kernel': np.zeros((2, 3), np.float32),
       'all_zero': np.zeros((2, 3), np.float32)}
  got_w, _ = run_lars(w0, [g, g], [0.1, 0.1])
  # zero_kernel, step 1: ratio 1, v = 0.1 * 0.5 (the formula's ratio, 0, would never move
  # it); step 2: ||w|| = 0.05 sqrt(6), ||g|| = 0.5 sqrt(6), so the trust ratio applies.
  v1, w1 = 0.05, -0.05
  local_lr = TRUST * 0.05 / (0.5 + WEIGHT_DECAY * 0.05)
  w2 = w1 - (MOMENTUM * v1 + 0.1 * local_lr * (0.5 + WEIGHT_DECAY * w1))
  np.testing.assert_allclose(got_w['zero_kernel'], np.full((2, 3), w2), rtol=1e-7)
  # still_kernel: ratio 1, so each step decays by lr * wd: v1 = 0.1 * 5e-4 * 2 = 1e-4.
  v1, w1 = 1e-4, 2.0 - 1e-4
  w2 = w1 - (MOMENTUM * v1 + 0.1 * WEIGHT_DECAY * w1)
  np.testing.assert_allclose(got_w['still_kernel'], np.full((2, 3), w2), rtol=1e-7)
  np.testing.assert_array_equal(got_w['all_zero'], np.zeros((2, 3)))  # no NaN from 0 / 0
  expected_w, _ = lars_rule_by_hand(w0, [g, g], [0.1, 0.1])
  for k in w0:
    np.testing.assert_allclose(got_w[k], expected_w[k], rtol=1e-7, err_msg=k)


def test_lars_leaves_biases_to_plain_momentum_without_decay():
  w0 = {'bias': np.array([0.0, 1.0, -2.0], np.float32)}
  g = [{'bias': np.array([0.5, 0.0, 1.0], np.float32)}] * 2
  got_w, got_v = run_lars(w0, g, [0.1, 0.1])
  # v1 = 0.1 g; v2 = 0.9 v1 + 0.1 g = 0.19 g; w = w0 - 0.29 g: no ratio, no decay (the
  # middle bias, with no gradient, stays at 1 exactly).
  np.testing.assert_allclose(got_v['bias'], 0.19 * g[0]['bias'], rtol=1e-6)
  np.testing.assert_allclose(got_w['bias'], [-0.145, 1.0, -2.29], rtol=1e-6)
  assert got_w['bias'][1] == 1.0


def test_from_config_picks_the_optimizer_and_reads_old_configs_as_sgd():
  from configs import default
  config = default.get_config()
  w0, grads, _ = lars_case()
  params = jax.tree.map(jnp.asarray, w0)
  g = jax.tree.map(jnp.asarray, grads[0])

  def first_update(tx):
    return tx.update(g, tx.init(params), params, learning_rate=0.5)[0]

  config.optimizer = 'lars'
  expected = first_update(optim.lars(0.9, 5e-4, 0.001))
  for k, u in first_update(optim.from_config(config)).items():
    np.testing.assert_array_equal(u, expected[k])
  config.optimizer = 'sgd'
  expected = first_update(optim.paper_sgd(0.9, 5e-4))
  for k, u in first_update(optim.from_config(config)).items():
    np.testing.assert_array_equal(u, expected[k])
  del config['optimizer']  # a workdir's config.json from before the field existed
  for k, u in first_update(optim.from_config(config)).items():
    np.testing.assert_array_equal(u, expected[k])
  config.optimizer = 'adam'
  with pytest.raises(ValueError, match="unknown optimizer 'adam'; choose one of"):
    optim.from_config(config)


def test_linear_scaling_rule_from_the_papers_rate():
  from configs import default
  config = default.get_config()
  config.learning_rate, config.batch_size = 0.01, 4096
  assert optim.base_learning_rate(config) == 0.01  # learning_rate_batch_size 0: as given
  config.learning_rate_batch_size = 128
  assert optim.base_learning_rate(config) == pytest.approx(0.32, rel=1e-12)
  config.batch_size = 128
  assert optim.base_learning_rate(config) == 0.01
  config.batch_size = 32  # smaller batches scale down the same way
  assert optim.base_learning_rate(config) == pytest.approx(0.0025, rel=1e-12)


def test_warmup_reaches_the_base_rate_at_its_last_step():
  # 10 warmup steps to 0.32: (step + 1) / 10 of it, then the schedule's own value.
  constant = optim.learning_rate_schedule('constant', 0.32, total_steps=100, warmup_steps=10)
  np.testing.assert_allclose(lr_at(constant, [0, 1, 8, 9, 10, 99]),
                             [0.032, 0.064, 0.288, 0.32, 0.32, 0.32], rtol=1e-6)


def test_polynomial_schedule_decays_quadratically_to_zero():
  schedule = optim.learning_rate_schedule('polynomial', 0.32, total_steps=100)
  np.testing.assert_allclose(lr_at(schedule, [0, 25, 50, 99, 100, 120]),
                             [0.32, 0.32 * 0.75 ** 2, 0.08, 0.32e-4, 0.0, 0.0],
                             rtol=1e-5, atol=1e-12)
