"""Where the tests find the paper's recipe files: one place, so that moving them is a one-line change."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from itnas.config import defaults, flatten
from itnas.files import read_yaml

RECIPES = Path(__file__).resolve().parents[1] / "config" / "recipes"
SEARCH = RECIPES / "search.yaml"
TRAIN_CIFAR = RECIPES / "train_cifar.yaml"
TRAIN_IMAGENET = RECIPES / "train_imagenet.yaml"

# How a run runs (device, threads, compilation, ...): itnas/schemas/runtime.json promises that none
# of these keys changes what a run computes beyond float rounding, so they are no paper settings.
RUNTIME_PREFIX = "runtime."


def settings(kind: str, *recipes: Path) -> set[str]:
    """The dotted keys of every setting the `recipes` state or the `kind` schema defines, less
    the runtime block's."""
    keys = set(flatten(defaults(kind)))
    for path in recipes:
        keys |= set(flatten(read_yaml(path, "recipe")))
    return {k for k in keys if not k.startswith(RUNTIME_PREFIX)}


def recipe_value(path: Path, key: str):
    """The value a recipe runs with for dotted `key`: its own, else its schema's default (the
    recipes state only what differs from the schemas' defaults, which are the paper's)."""
    kind = "search" if path == SEARCH else "train"
    return {**flatten(defaults(kind)), **flatten(read_yaml(path, "recipe"))}.get(key)


@dataclass
class Setting:
    """The check of one setting, run with the setting at `value` (or at `value(the recipe's
    value)`: a flag flipped, the other schedule)."""

    value: Any
    check: Callable[[Any], None]

    def value_for(self, recipe: Path, key: str) -> Any:
        return self.value(recipe_value(recipe, key)) if callable(self.value) else self.value


class Checks(dict[str, Setting]):
    """The settings tests' register: dotted key -> its check."""

    def setting(self, key: str, value: Any):
        """Register the decorated check of `key`, run with `key` set to `value`."""

        def register(check: Callable[[Any], None]) -> Callable[[Any], None]:
            self[key] = Setting(value, check)
            return check

        return register
