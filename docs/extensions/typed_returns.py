"""Render numpydoc ``Returns`` and ``Yields`` sections written in the scanpy style.

scanpy-style docstrings describe what is returned in prose, often followed by a definition
list of the ``adata`` fields that are written::

    Returns
    -------
    ``None``, or a copy of ``adata`` when ``copy=True``; sets

    ``adata.obsm[key_added]``
        float32 array ``(n_obs, dim)``.

Napoleon would read the first line as a return *type*. This keeps the section as written;
``name : type`` lines become ``name (type)``. Adapted from scanpy's and the scverse
cookiecutter's ``typed_returns`` extension.
"""

from __future__ import annotations

import re
from collections.abc import Generator, Iterable

from sphinx.application import Sphinx
from sphinx.ext.napoleon import NumpyDocstring


def _process_return(lines: Iterable[str]) -> Generator[str, None, None]:
    for line in lines:
        if m := re.fullmatch(r"(?P<param>\w+)\s+:\s+(?P<type>[\w.]+)", line):
            yield f"{m['param']} (:class:`~{m['type']}`)"
        else:
            yield line


def _parse_section_as_written(self: NumpyDocstring, field: str) -> list[str]:
    lines_raw = self._dedent(self._consume_to_next_section())
    if lines_raw and lines_raw[0] == ":":
        del lines_raw[0]
    lines = self._format_block(f":{field}: ", list(_process_return(lines_raw)))
    if lines and lines[-1]:
        lines.append("")
    return lines


def _parse_returns_section(self: NumpyDocstring, section: str) -> list[str]:
    return _parse_section_as_written(self, "returns")


def _parse_yields_section(self: NumpyDocstring, section: str) -> list[str]:
    return _parse_section_as_written(self, "Yields")


def setup(app: Sphinx) -> dict[str, bool]:
    """Patch napoleon's numpydoc ``Returns`` and ``Yields`` parsers."""
    NumpyDocstring._parse_returns_section = _parse_returns_section
    NumpyDocstring._parse_yields_section = _parse_yields_section
    return {"parallel_read_safe": True, "parallel_write_safe": True}
