"""Datasets: the registry of benchmarks and stand-ins, fetching and verifying, and loaders.

Importing this package stays cheap (no torch); the heavier parts load on first use:
`itnas.data.fetch` (fetch, verify; `itnas.data.fetch` names the module, so import the
function as `from itnas.data.fetch import fetch`), `itnas.data.synthetic` (stand-ins),
`itnas.data.loaders` (datasets and loaders), `itnas.data.gpu_pipeline` (device loader).
"""

from itnas.data.registry import DatasetSpec, get_spec, list_specs

_LAZY = {
    "verify": "itnas.data.fetch",
    "check_present": "itnas.data.fetch", "generate": "itnas.data.synthetic",
    "build_dataset": "itnas.data.loaders", "make_loader": "itnas.data.loaders",
    "epoch_loader": "itnas.data.loaders", "split_indices": "itnas.data.loaders",
    "subset": "itnas.data.loaders", "set_epoch": "itnas.data.loaders",
    "DeviceDataset": "itnas.data.gpu_pipeline", "DeviceLoader": "itnas.data.gpu_pipeline",
}

__all__ = ["DatasetSpec", "get_spec", "list_specs", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'itnas.data' has no attribute '{name}'")
