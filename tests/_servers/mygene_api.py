"""mygene.info's batch query, ``POST /v3/query/`` with form fields ``q``, ``scopes``, ``fields``, ``species``.

The answer is a JSON list with, per query term in order, its hits (``query``, ``_id``,
``_score`` and the requested fields; several hits when the term matches several genes) or
``{"query": term, "notfound": true}``.
"""

from __future__ import annotations

import csv
from typing import Any
from urllib.parse import parse_qs

from ._base import FakeService, Request


def gene_hit(entrez: int, symbol: str, name: str, summary: str | None, score: float = 20.0) -> dict[str, Any]:
    """A gene document as mygene.info stores it (only the fields scelmo asks for)."""
    doc: dict[str, Any] = {
        "_id": str(entrez),
        "_score": score,
        "entrezgene": str(entrez),
        "name": name,
        "symbol": symbol,
    }
    if summary is not None:
        doc["summary"] = summary
    return doc


class MyGeneService(FakeService):
    """Fake mygene.info on 127.0.0.1; ``url`` is the API root for ``MyGeneInfo(url=...)``.

    Parameters
    ----------
    genes
        ``query term -> list of gene documents`` (several documents: duplicate hits).
    """

    query_path = "/v3/query/"

    def __init__(self, genes: dict[str, list[dict[str, Any]]]) -> None:
        super().__init__()
        self.genes = genes

    @property
    def url(self) -> str:
        return f"{self.root}/v3"

    def error_body(self, status: int, message: str) -> Any:
        return {"code": status, "success": False, "error": message}

    def terms(self, request: Request) -> list[str]:
        form = parse_qs(request.body.decode())
        return next(csv.reader([form["q"][0]], skipinitialspace=True))

    def handle(self, request: Request) -> tuple[int, dict[str, str], Any]:
        if request.method != "POST" or request.path != self.query_path:
            return 404, {}, self.error_body(404, f"Unknown {request.method} {request.path}")
        form = {k: v[0] for k, v in parse_qs(request.body.decode()).items()}
        if "scopes" not in form or "species" not in form:
            return 400, {}, self.error_body(400, "scopes and species are required by this test server")
        fields = set(form.get("fields", "").split(","))
        out = []
        for term in self.terms(request):
            docs = self.genes.get(term)
            if not docs:
                out.append({"query": term, "notfound": True})
                continue
            for doc in docs:
                hit = {"query": term, "_id": doc["_id"], "_score": doc["_score"]}
                hit.update({k: v for k, v in doc.items() if k in fields})
                out.append(hit)
        return 200, {}, out
