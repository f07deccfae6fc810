"""The paper's network on ImageNet at a pod-sized global batch of 4096: LARS, the linear
scaling rule and gradual warmup (docs/training.md, "Large batches (TPU pods)").

    python train.py --config=configs/imagenet_pod.py --workdir=gs://BUCKET/alexnet_pod

run on every host of the slice at once, for example from a workstation:

    gcloud compute tpus tpu-vm ssh $TPU_NAME --zone=$ZONE --worker=all --command="\\
      cd alexnet-jax && .venv/bin/python train.py --config=configs/imagenet_pod.py \\
        --workdir=gs://BUCKET/alexnet_pod --config.data_dir=gs://BUCKET/tensorflow_datasets"

On a Cloud TPU VM, TPU_WORKER_HOSTNAMES tells train.py that it is one of several processes
and it calls jax.distributed.initialize() (README, "TPU pods and several hosts"). Data: TFDS
`imagenet2012`, prepared once as configs/imagenet.py says, in a data_dir every host reads.
To resume, run the same command again on every host. Afterwards, on any machine that reads
the bucket: python -m alexnet_jax.evaluate --workdir=gs://BUCKET/alexnet_pod.

Hardware: a Cloud TPU v4-32 slice: 16 TPU v4 chips (one JAX device each) on 4 hosts, so each
host reads 1,024 images of every step and each chip computes 256. 312 steps of 4096 images an
epoch, 90 epochs (28,080 steps). A v5e-32 slice (32 chips) runs it unchanged at 128 a chip.

The recipe: LARS (You, Gitman and Ginsburg 2017) with their trust coefficient 0.001, the
paper's momentum 0.9 and weight decay 5e-4, biases left out of the trust ratio and the decay.
The paper's rate, 0.01 at batch 128, scaled linearly to 0.32 at 4096 (Goyal et al. 2017),
reached by a linear warmup over 5 epochs (Goyal et al.'s length), then decayed as
(1 - step / total)^2 (You et al.'s polynomial decay). Under LARS the global rate moves each
kernel by at most rate x trust coefficient of its norm a step before momentum (3.2e-4 at
0.32), a different quantity from SGD's rate: 0.32 is the linear rule's value, not one tuned
for LARS. A checkpoint every 100 steps (409,600 images, about a third of an epoch), besides
the one after each evaluation (once an epoch): a preempted slice loses at most that much.

Expected result: not measured by this project. Published for this setting: You et al.'s
abstract (arXiv:1708.03888) says LARS scaled AlexNet to batch 8K without loss of accuracy;
their AlexNet has batch normalisation (AlexNet-BN), where this network keeps the paper's
local response normalisation, so their accuracy is not this network's. configs/imagenet.py's
trap (a loss stuck at ln(1000) with the paper's init) and its fallback apply here too.
"""

from alexnet_jax.configs import imagenet


def get_config():
  config = imagenet.get_config()
  config.batch_size = 4096  # global: 256 on each of a v4-32's 16 chips
  config.optimizer = 'lars'
  config.lars_trust_coefficient = 0.001
  config.learning_rate = 0.01
  config.learning_rate_batch_size = 128  # 0.01 at 128 -> 0.32 at 4096
  config.warmup_epochs = 5.0
  config.lr_schedule = 'polynomial'
  config.log_every_steps = 50
  config.checkpoint_every_steps = 100
  return config
