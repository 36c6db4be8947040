"""Training tests: one intra-op thread for tiny models."""

import torch

# Tiny models on a shared 2-core machine: one intra-op thread is ~40x faster per small matmul
# than two threads spinning against each other (and against other processes).
torch.set_num_threads(1)
