"""A table's formats: text escaped for LaTeX and HTML, code spans kept as code."""

from __future__ import annotations

from itnas.report import render


def test_markdown_code_spans_become_code_in_html_and_typewriter_in_latex():
    text = "the `darts_2nd` variant & `itnas select`"
    assert render.html_inline(text) == "the <code>darts_2nd</code> variant &amp; <code>itnas select</code>"
    assert render.latex_inline(text) == r"the \texttt{darts\_2nd} variant \& \texttt{itnas select}"


def test_latex_escapes_special_characters():
    assert render.latex_escape("a_b & 5% ± —") == r"a\_b \& 5\% $\pm$ ---"
