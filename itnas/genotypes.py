"""Published cells of the DARTS space, registered by name so they can be typed on the command
line (`--genotype DARTS_V2`); each entry cites where it comes from. `resolve_genotype` takes
such a name or a genotype JSON file.
"""

from __future__ import annotations

from pathlib import Path

from itnas.errors import UserError
from itnas.files import read_json
from itnas.layout import parse_seed_folder, searched_name
from itnas.space import Genotype, load_genotype, make_genotype

# Published cells of the DARTS space that use only our seven primitives. Sources: the
# `genotypes.py` files of the authors' public repositories (cited per entry).
PUBLISHED: dict[str, tuple[Genotype, str]] = {
    # Liu et al., DARTS (ICLR 2019), first order; quark0/darts cnn/genotypes.py.
    "DARTS_V1": (make_genotype(
        [("sep_conv_3x3", 1), ("sep_conv_3x3", 0), ("skip_connect", 0), ("sep_conv_3x3", 1),
         ("skip_connect", 0), ("sep_conv_3x3", 1), ("sep_conv_3x3", 0), ("skip_connect", 2)],
        [("max_pool_3x3", 0), ("max_pool_3x3", 1), ("skip_connect", 2), ("max_pool_3x3", 0),
         ("max_pool_3x3", 0), ("skip_connect", 2), ("skip_connect", 2), ("avg_pool_3x3", 0)],
    ), "DARTS (1st order), quark0/darts cnn/genotypes.py"),
    # Liu et al., DARTS (ICLR 2019), second order; quark0/darts cnn/genotypes.py.
    "DARTS_V2": (make_genotype(
        [("sep_conv_3x3", 0), ("sep_conv_3x3", 1), ("sep_conv_3x3", 0), ("sep_conv_3x3", 1),
         ("sep_conv_3x3", 1), ("skip_connect", 0), ("skip_connect", 0), ("dil_conv_3x3", 2)],
        [("max_pool_3x3", 0), ("max_pool_3x3", 1), ("skip_connect", 2), ("max_pool_3x3", 1),
         ("max_pool_3x3", 0), ("skip_connect", 2), ("skip_connect", 2), ("max_pool_3x3", 1)],
    ), "DARTS (2nd order), quark0/darts cnn/genotypes.py"),
    # Xu et al., PC-DARTS (ICLR 2020), CIFAR-10 cell; yuhuixu1993/PC-DARTS genotypes.py.
    "PC_DARTS": (make_genotype(
        [("sep_conv_3x3", 1), ("skip_connect", 0), ("sep_conv_3x3", 0), ("dil_conv_3x3", 1),
         ("sep_conv_5x5", 0), ("sep_conv_3x3", 1), ("avg_pool_3x3", 0), ("dil_conv_3x3", 1)],
        [("sep_conv_5x5", 1), ("max_pool_3x3", 0), ("sep_conv_5x5", 1), ("sep_conv_5x5", 2),
         ("sep_conv_3x3", 0), ("sep_conv_3x3", 3), ("sep_conv_3x3", 1), ("sep_conv_3x3", 2)],
    ), "PC-DARTS CIFAR-10 cell, yuhuixu1993/PC-DARTS genotypes.py"),
    # Chen et al., P-DARTS (ICCV 2019); chenxin061/pdarts genotypes.py.
    "PDARTS": (make_genotype(
        [("skip_connect", 0), ("dil_conv_3x3", 1), ("skip_connect", 0), ("sep_conv_3x3", 1),
         ("sep_conv_3x3", 1), ("sep_conv_3x3", 3), ("sep_conv_3x3", 0), ("dil_conv_5x5", 4)],
        [("avg_pool_3x3", 0), ("sep_conv_5x5", 1), ("sep_conv_3x3", 0), ("dil_conv_5x5", 2),
         ("max_pool_3x3", 0), ("dil_conv_3x3", 1), ("dil_conv_3x3", 1), ("dil_conv_5x5", 3)],
    ), "P-DARTS, chenxin061/pdarts genotypes.py"),
    # Li et al., SGAS (CVPR 2020), criterion 1, best CIFAR cell (Cri1_CIFAR_3); lightaime/sgas cnn/genotypes.py.
    "SGAS_CRI1": (make_genotype(
        [("sep_conv_3x3", 0), ("dil_conv_3x3", 1), ("sep_conv_3x3", 0), ("sep_conv_3x3", 1),
         ("sep_conv_5x5", 1), ("sep_conv_5x5", 3), ("skip_connect", 0), ("dil_conv_5x5", 2)],
        [("max_pool_3x3", 0), ("dil_conv_5x5", 1), ("sep_conv_3x3", 0), ("skip_connect", 2),
         ("sep_conv_3x3", 1), ("skip_connect", 2), ("max_pool_3x3", 0), ("max_pool_3x3", 1)],
    ), "SGAS Cri.1 (Cri1_CIFAR_3, the authors' best), lightaime/sgas cnn/genotypes.py"),
    # Li et al., SGAS (CVPR 2020), criterion 2, best CIFAR cell (Cri2_CIFAR_3); lightaime/sgas cnn/genotypes.py.
    "SGAS_CRI2": (make_genotype(
        [("sep_conv_3x3", 0), ("sep_conv_3x3", 1), ("sep_conv_3x3", 0), ("sep_conv_3x3", 2),
         ("max_pool_3x3", 0), ("sep_conv_3x3", 3), ("sep_conv_3x3", 2), ("sep_conv_3x3", 3)],
        [("sep_conv_3x3", 0), ("max_pool_3x3", 1), ("dil_conv_3x3", 0), ("max_pool_3x3", 1),
         ("max_pool_3x3", 0), ("sep_conv_3x3", 2), ("max_pool_3x3", 0), ("sep_conv_5x5", 2)],
    ), "SGAS Cri.2 (Cri2_CIFAR_3, the authors' best), lightaime/sgas cnn/genotypes.py"),
}
# Not registered: NASNet-A and AmoebaNet-A use ops outside this space (sep_conv_7x7, conv_7x1_1x7)
# and five-node cells; SNAS, GDAS, MiLeNAS and the others of Table 1 have no cell in an authors'
# repository that we could check.


def published_names() -> list[str]:
    return sorted(PUBLISHED)


def lookup(name: str) -> Genotype | None:
    """A published genotype by name (case-insensitive), or None."""
    for key, (genotype, _) in PUBLISHED.items():
        if key.lower() == name.lower():
            return genotype
    return None


def resolve_genotype(name_or_file: str) -> tuple[Genotype, str]:
    """A registered name (DARTS_V2, ...) or a genotype JSON file; returns (genotype, label)."""
    found = lookup(name_or_file)
    if found is not None:
        return found, name_or_file.upper()
    path = Path(name_or_file)
    if path.is_file():
        return load_genotype(path), file_label(path)
    raise UserError(f"unknown genotype '{name_or_file}': not a registered name "
                    f"({', '.join(published_names())}) nor an existing file")


def file_label(path: Path) -> str:
    """How a genotype file is named in runs and tables: its `name` (`itnas search`, `derive
    --name`, `select` and `sample` write one, e.g. itnas-seed2, itnas-selected; itnas/layout.py
    makes them), else a name made from its folders (.../itnas/seed2/genotype.json: itnas-seed2),
    never the whole path."""
    data = read_json(path, "genotype")
    name = data.get("name") if isinstance(data, dict) else None
    if isinstance(name, str) and name.strip():
        return name.strip()
    if path.stem != "genotype":
        return path.stem
    folder = path.resolve().parent
    seed = parse_seed_folder(folder.name)
    if seed is not None:
        return searched_name(folder.parent.name, seed)
    return folder.name or "genotype"
