"""The network: its architecture and layers, the layer table, its input (the batch's fields and
the pixel arithmetic on the device) and the kernels XLA:CPU runs it on. jax and flax only."""
