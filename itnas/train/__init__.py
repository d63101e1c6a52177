"""Evaluation: the networks built from a genotype, their training under the CIFAR and ImageNet
protocols, short-training selection among searched cells, multi-process training, statistics.

- networks.py     the DARTS CIFAR and ImageNet networks (auxiliary head, drop-path)
- loop.py         one training run: schedules, the step, evaluation, metrics
- batches.py      what a run trains on: data, per-epoch batch plans, loaders
- select.py       the best of several cells by short training on held-out training data
- distributed.py  torchrun process groups and the split of a global batch
- stats.py        parameters and multiply-accumulates
"""
