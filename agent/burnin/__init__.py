"""NCCL/gloo all-reduce burn-in: a worker subprocess per rank, a runner that bounds it in time."""
