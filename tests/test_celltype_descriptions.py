"""``pp.celltype_descriptions``: LangCell-style texts from the Cell Ontology, user texts, the LLM route."""

from __future__ import annotations

import pytest
import scanpy as sc

import scelmo as se
from scelmo.annotation import CellOntology, class_texts


def test_pbmc_bulk_labels_from_the_ontology():
    labels = list(sc.datasets.pbmc68k_reduced().obs["bulk_labels"].cat.categories)
    with pytest.warns(UserWarning, match=r"1 of 10 labels matched no Cell Ontology term: \['CD34\+'\]"):
        frame = se.pp.celltype_descriptions(labels)
    assert frame.index.tolist() == labels
    assert frame.attrs["unmapped"] == ["CD34+"]
    assert frame.attrs["provenance"]["source"] == "cell_ontology"
    assert frame.attrs["provenance"]["cell_ontology"].startswith("v20")
    cl = CellOntology()
    monocyte = frame.loc["CD14+ Monocyte"]
    assert monocyte["term_id"] == "CL:0001054"
    # LangCell's text: "cell type: NAME. DEFINITION"
    assert monocyte["text"] == f"cell type: CD14-positive monocyte. {cl.definition('CL:0001054')}"
    assert monocyte["texts"][0] == monocyte["text"]
    assert monocyte["texts"][1] == "cell type: CD14-positive monocyte."
    b_cell = frame.loc["CD19+ B"]
    assert [f"cell type: {s}." for s in b_cell["synonyms"]] == b_cell["texts"][2:]
    # the unmapped label keeps its own name as text
    assert frame.loc["CD34+", "texts"] == ["cell type: CD34+."]
    assert frame.loc["CD34+", "match"] == "unmapped"


def test_overrides_and_templates():
    frame = se.pp.celltype_descriptions(
        ["CD34+"], overrides={"CD34+": "CL:0000837"}, template="{name}: {definition}"
    )
    assert frame.attrs["unmapped"] == []
    row = frame.loc["CD34+"]
    assert row["match"] == "user"
    assert row["text"].startswith("hematopoietic multipotent progenitor cell: ")


def test_user_texts_are_kept_and_still_mapped():
    frame = se.pp.celltype_descriptions(
        ["B cell", "T cell"], source={"B cell": "makes antibodies", "T cell": ["kills", "helps"]}
    )
    assert frame.loc["B cell", "texts"] == ["makes antibodies"]
    assert frame.loc["T cell", "texts"] == ["kills", "helps"]
    assert frame.loc["T cell", "term_id"] == "CL:0000084"
    with pytest.raises(KeyError, match="No text for"):
        se.pp.celltype_descriptions(["B cell", "NK cell"], source={"B cell": "x"})


def test_bad_arguments():
    with pytest.raises(TypeError, match="wrap a single label"):
        se.pp.celltype_descriptions("B cell")
    with pytest.raises(ValueError, match="must be 'cell_ontology', 'llm'"):
        se.pp.celltype_descriptions(["B cell"], source="wikipedia")
    with pytest.raises(ValueError, match="cell_type"):
        se.pp.celltype_descriptions(["B cell"], source="llm", prompt="Describe it.", cache=False)


def test_llm_source_through_a_local_openai_compatible_server(monkeypatch):
    """The chat-model route sends one request per label and builds "cell type: NAME. ANSWER"."""
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    asked = []

    class Chat(BaseHTTPRequestHandler):
        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            asked.append(body["messages"][-1]["content"])
            answer = {
                "id": "x",
                "object": "chat.completion",
                "created": 0,
                "model": body["model"],
                "choices": [
                    {
                        "index": 0,
                        "finish_reason": "stop",
                        "message": {"role": "assistant", "content": "They fight."},
                    }
                ],
            }
            data = json.dumps(answer).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Chat)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        frame = se.pp.celltype_descriptions(
            ["NK cell", "B cell"],
            source="llm",
            model="test-model",
            api_key="sk-test",
            base_url=f"http://127.0.0.1:{server.server_address[1]}/v1",
            cache=False,
        )
    finally:
        server.shutdown()
        server.server_close()
    assert sorted(asked) == sorted(
        f"Please summarize the major function of cell type: {label}. Use academic language in one "
        "paragraph and include the genes it expresses."
        for label in ("NK cell", "B cell")
    )
    assert frame.loc["NK cell", "text"] == "cell type: natural killer cell. They fight."
    assert frame.attrs["provenance"]["model"] == "test-model"
    assert "api_key" not in frame.attrs["provenance"]


def test_class_texts_choices():
    frame = se.pp.celltype_descriptions(["B cell", "monocyte"])
    classes, texts, ids = class_texts(frame, descriptions="definition")
    assert classes == ["B cell", "monocyte"]
    assert texts["B cell"] == [frame.loc["B cell", "text"]]
    assert ids == {"B cell": "CL:0000236", "monocyte": "CL:0000576"}
    _, names, _ = class_texts(frame, descriptions="name")
    assert names["monocyte"] == ["cell type: monocyte."]
    _, everything, _ = class_texts(frame)
    assert everything["B cell"] == list(frame.loc["B cell", "texts"])
    with pytest.raises(ValueError, match="descriptions"):
        class_texts(frame, descriptions="some")
