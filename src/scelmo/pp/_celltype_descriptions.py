"""``pp.celltype_descriptions``: texts for cell types, from the Cell Ontology, a chat model or you.

The function lives with the annotation code that reads its frame
(:mod:`scelmo.annotation._descriptions`); ``pp`` names it for users, as scanpy's namespaces do.
"""

from __future__ import annotations

from scelmo.annotation._descriptions import CELLTYPE_PROMPT, LANGCELL_TEMPLATE, celltype_descriptions

__all__ = ["CELLTYPE_PROMPT", "LANGCELL_TEMPLATE", "celltype_descriptions"]
