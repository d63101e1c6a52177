"""What a refused bad input looks like from the command line: a non-zero status and one line on
stderr, never a traceback."""

from __future__ import annotations


def one_line_error(capsys, code: int) -> str:
    err = capsys.readouterr().err
    assert code != 0
    assert err.count("\n") == 1, err
    assert "Traceback" not in err
    return err
