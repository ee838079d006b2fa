"""Customer segmentation of an online store's sales history, with tracked experiments."""

import os

# The matrices here are small (customers x a few features): extra BLAS/OpenMP threads gain little,
# and when the cores are busy (a shared machine, or parallel sweep workers) OpenMP's spinning
# threads made KMeans 50x and t-SNE 2x slower (measured on 2 cores). One thread per process unless
# the user sets these variables; sweeps parallelise across processes instead (sweep.n_jobs).
for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")
