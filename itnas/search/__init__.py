"""The ITNAS search: a reader of the method starts here (docs/architecture.md).

- policies.py   edge weights: softmax, annealed Gumbel-softmax, the inter-layer transition (Eq. 11)
- supernet.py   mixed ops, search cells and the supernet (the primitives are in itnas/ops.py)
- architect.py  the architecture step: first order, or DARTS's unrolled second order
- loop.py       one search: the bi-level steps, the epochs, what a run folder gets
- batches.py    the weight and architecture halves of the training set
- derive.py     genotypes from an arch state: the DARTS top-2 rule and TIEP (Algorithm 1)
"""
