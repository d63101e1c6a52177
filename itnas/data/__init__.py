"""Datasets: the registry of benchmarks and stand-ins (registry.py), their manifests (manifest.py),
downloading and preparing them (fetch.py, archive.py), generated stand-ins (synthetic.py), the
datasets and loaders the runs read (loaders.py) and the GPU-resident pipeline (gpu_pipeline.py).
Import from the modules; the registry (torch-free) is also here."""

from itnas.data.registry import DatasetSpec, get_spec, list_specs

__all__ = ["DatasetSpec", "get_spec", "list_specs"]
