"""Files no reader should take end in one line naming the file, never a hang or a traceback: a
named pipe, a device, a symlink loop, a path under a regular file, a folder, a file far larger
than a config, nesting or aliases that would exhaust the parser, a key given twice."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from itnas.cli import main
from itnas.errors import UserError
from itnas.files import YAML_MAX_DEPTH, parse_yaml, read_json, read_yaml
from itnas.space import load_genotype
from tests.reliability.errors import one_line_error

BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 9)}]\n" for i in range(8))


def _config_path(tmp_path: Path, kind: str) -> Path:
    """A config path that is not a plain readable YAML file, of kind `kind`."""
    path = tmp_path / "search.yaml"
    if kind == "named pipe":
        os.mkfifo(path)
    elif kind == "symlink loop":
        os.symlink(tmp_path / "b.yaml", path)
        os.symlink(path, tmp_path / "b.yaml")
    elif kind == "under a regular file":
        (tmp_path / "afile").write_text("x")
        path = tmp_path / "afile" / "search.yaml"
    elif kind == "a folder":
        path.mkdir()
    elif kind == "a device":
        path = Path("/dev/zero")  # endless: read, it would fill the memory
    return path


PATHS = {
    "named pipe": "not a regular file (a named pipe",
    "symlink loop": "a loop of symbolic links",
    "under a regular file": "afile is a file, not a folder",
    "a folder": "is a folder, expected a config file",
    "a device": "not a regular file",
}


@pytest.mark.timeout(60)  # a named pipe used to block the reader forever
@pytest.mark.parametrize("kind", list(PATHS))
def test_config_paths_that_are_no_regular_file_are_refused_without_reading(tmp_path, capsys, kind):
    path = _config_path(tmp_path, kind)
    err = one_line_error(capsys, main(["search", "--config", str(path), "--seed", "0",
                                       "--out", str(tmp_path / "run")]))
    assert f"{path}: " in err and PATHS[kind] in err, err
    assert not (tmp_path / "run").exists()


YAML = {
    "far larger than a config": ("epochs: 3\n" + "# padding\n" * 200_000, "larger than 1,048,576 bytes"),
    "deeply nested list": ("epochs: " + "[" * 5000 + "]" * 5000 + "\n", f"nested deeper than {YAML_MAX_DEPTH}"),
    "deeply nested mapping": ("epochs: " + "{a: " * 3000 + "1" + "}" * 3000 + "\n", "nested deeper than"),
    "deep through aliases": ("a: &a " + "[" * 20 + "]" * 20 + "\nb: &b [*a, [[[[[[[[[[[[[[*a]]]]]]]]]]]]]]\n",
                             "nested deeper than"),
    "alias bomb": (BOMB, "more than 100,000 values once its aliases are expanded"),
    "duplicate key": ("epochs: 1\nepochs: 2\n", "line 2, column 1: duplicate key 'epochs' (first given at line 1)"),
    "duplicate nested key": ("optim:\n  lr: 0.1\n  momentum: 0.5\n  lr: 0.2\n",
                             "line 4, column 3: duplicate key 'lr' (first given at line 2)"),
    "duplicate key in a flow mapping": ("optim: {lr: 0.1, lr: 0.2}\n", "duplicate key 'lr'"),
    "not UTF-8": ("# caf\xe9\nepochs: 1\n".encode("latin-1"), "not UTF-8 text"),
    "binary": (b"\x00\xff\xfe" * 100, "not UTF-8 text"),
}


@pytest.mark.parametrize("case", list(YAML))
def test_yaml_that_would_exhaust_or_mislead_the_parser_is_refused_naming_the_file(tmp_path, capsys, case):
    text, needle = YAML[case]
    path = tmp_path / "search.yaml"
    (path.write_bytes if isinstance(text, bytes) else path.write_text)(text)
    err = one_line_error(capsys, main(["search", "--config", str(path), "--seed", "0",
                                       "--out", str(tmp_path / "run")]))
    assert f"{path}: " in err and needle in err, err


@pytest.mark.parametrize("value,needle", [
    ("[" * 5000 + "]" * 5000, "nested deeper than"),
    ("{" + BOMB.strip().replace("\n", ", ") + "}", "more than 100,000 values"),
    ("{lr: 1, lr: 2}", "duplicate key 'lr'"),
])
def test_set_values_are_parsed_with_the_same_limits(tmp_path, capsys, value, needle):
    err = one_line_error(capsys, main(["search", "--set", f"optim={value}", "--seed", "0",
                                       "--out", str(tmp_path / "run")]))
    assert "--set 'optim=" in err and needle in err, err


def test_merge_keys_and_anchors_still_work():
    data = parse_yaml("base: &b {lr: 0.1, momentum: 0.9}\noptim:\n  <<: *b\n  lr: 0.2\nsame: *b\n")
    assert data["optim"] == {"lr": 0.2, "momentum": 0.9} and data["same"] == data["base"]


def test_every_yaml_the_project_ships_parses_within_the_limits():
    repo = Path(__file__).resolve().parents[2]
    for path in [*repo.glob("config/**/*.yaml"), *repo.glob("workflow/**/*.yaml"), *repo.glob("profiles/**/*.yaml")]:
        read_yaml(path)


def test_deeply_nested_json_is_one_line(tmp_path):
    path = tmp_path / "genotype.json"
    path.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(UserError, match="nested too deeply"):
        read_json(path, "genotype")


@pytest.mark.timeout(60)
def test_json_files_that_are_named_pipes_are_refused_too(tmp_path):
    pipe = tmp_path / "genotype.json"
    os.mkfifo(pipe)
    with pytest.raises(UserError, match="not a regular file"):
        load_genotype(pipe)
