"""Training and what uses the steps: the jitted steps, the optimiser, the loop, evaluation,
prediction, a trained network loaded back, fault handling, config checks."""
