"""Under pytest-xdist every worker (and the notebook kernels and subprocesses
it starts) gets one CPU thread, so N workers on N cores do not fight over
cores: oversubscribed, PyTorch's thread pool runs several times slower."""

import os

if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ["OMP_NUM_THREADS"] = "1"
    os.environ["MKL_NUM_THREADS"] = "1"
    import torch

    torch.set_num_threads(1)
