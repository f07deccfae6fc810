"""Test set-up: keep TensorFlow (used only as a reference here) off any GPU and quiet."""

import os

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
os.environ.setdefault('CUDA_VISIBLE_DEVICES', '')
