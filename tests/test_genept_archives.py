"""GenePT's Zenodo archives: md5-verified zip, members extracted alone, loaded without ``trusted=True``.

A real HTTP server on 127.0.0.1 serves small zip archives with exactly the upstream layout (member
names, the trailing dot of the text-embedding-3-large table, ``__MACOSX/`` entries).
"""

from __future__ import annotations

import hashlib
import io
import json
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest

import scelmo as se
import scelmo.datasets as ds
from scelmo.datasets._registry import _builtin_entries

V2 = "GenePT_emebdding_v2"
ADA = f"{V2}/GenePT_gene_embedding_ada_text.pickle"
MODEL_3 = f"{V2}/GenePT_gene_protein_embedding_model_3_text.pickle."
SUMMARIES = f"{V2}/NCBI_summary_of_genes.json"
UNIPROT = f"{V2}/NCBI_UniProt_summary_of_genes.json"
V2_ENTRIES = (
    "genept_ada_text",
    "genept_model_3_text",
    "genept_ncbi_summaries",
    "genept_ncbi_uniprot_summaries",
)


def md5(content: bytes) -> str:
    return hashlib.md5(content).hexdigest()


def sha(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if p.name.startswith(".tmp-"))


def genept_tables() -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Keys mixing current symbols (CXCL8, H3-3B), a previous symbol (IL8) and an alias (p53)."""
    rng = np.random.default_rng(7)
    genes = ["CXCL8", "IL8", "H3-3B", "CD3E", "p53", "MS4A1"]
    ada = {gene: rng.normal(size=8).tolist() for gene in genes}  # GenePT: lists of floats
    model_3 = {gene: rng.normal(size=12).tolist() for gene in [*genes, "TP53"]}
    return ada, model_3


def zip_bytes(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    return buffer.getvalue()


@pytest.fixture
def v2_zip() -> dict:
    ada, model_3 = genept_tables()
    summaries = {"CXCL8": "This gene encodes a chemokine.", "CD3E": "T-cell surface glycoprotein."}
    members = {
        f"{V2}/": b"",
        ADA: pickle.dumps(ada),
        MODEL_3: pickle.dumps(model_3),
        SUMMARIES: json.dumps(summaries).encode(),
        UNIPROT: json.dumps(summaries).encode(),
    }
    content = zip_bytes(members)
    return {"bytes": content, "members": members, "ada": ada, "model_3": model_3}


def register_copies(url: str, content: bytes, *, prefix: str = "t_") -> None:
    """The built-in GenePT v2 entries under new names, with this archive's url and md5."""
    archive = ds.entry("genept_v2_archive")
    ds.register(
        f"{prefix}genept_v2_archive",
        url=url,
        sha256="unknown",
        md5=md5(content),
        filename=archive["filename"],
        note=archive["note"],
    )
    for name in V2_ENTRIES:
        found = ds.entry(name)
        ds.register(
            f"{prefix}{name}",
            archive=f"{prefix}genept_v2_archive",
            member=found["member"],
            filename=found["filename"],
            sha256="unknown",
        )


# --- the built-in entries --------------------------------------------------------------------


def test_builtin_genept_entries_point_at_the_published_archives():
    entries = _builtin_entries()
    archive = entries["genept_v2_archive"]
    assert archive["url"] == "https://zenodo.org/records/10833191/files/GenePT_emebdding_v2.zip?download=1"
    assert (archive["md5"], archive["sha256"]) == ("3f6ce4317e3a0091978ae5cb8fbf05a3", "unknown")
    assert [entries[name]["member"] for name in V2_ENTRIES] == [ADA, MODEL_3, SUMMARIES, UNIPROT]
    assert {entries[name]["archive"] for name in V2_ENTRIES} == {"genept_v2_archive"}
    assert entries["genept_model_3_text"]["filename"].endswith(
        "GenePT_gene_protein_embedding_model_3_text.pickle."
    )
    v1 = entries["genept_v1_archive"]
    assert v1["url"] == "https://zenodo.org/records/10030426/files/data_embedding.zip?download=1"
    assert v1["md5"] == "eabb1f71dfb3580f5855ff0d3217c715"
    assert "single third-party source" in v1["note"]
    assert "single third-party source" in entries["genept_gpt_3_5"]["note"]
    assert entries["genept_gpt_3_5"]["member"] == "GPT_3_5_gene_embeddings.pickle"
    # No entry downloads a bare pickle from Zenodo any more.
    assert not [e["url"] for e in entries.values() if "zenodo" in e.get("url", "") and ".pickle" in e["url"]]


def test_retired_name_says_what_replaced_it(data_dir):
    with pytest.raises(KeyError, match=r"removed.*'genept_ada_text'.*'genept_gpt_3_5'"):
        ds.fetch("genept_ada_text_v1")


def test_available_shows_members_md5_and_notes(data_dir):
    table = ds.available().set_index("name")
    assert table.loc["genept_v2_archive", ["kind", "md5", "sha256"]].tolist() == [
        "download",
        "3f6ce4317e3a0091978ae5cb8fbf05a3",
        "unknown",
    ]
    assert table.loc["genept_ada_text", ["kind", "archive", "present"]].tolist() == [
        "member",
        "genept_v2_archive",
        False,
    ]
    assert table.loc["genept_model_3_text", "path"] == str(data_dir / "genept" / "v2" / MODEL_3)
    assert "third-party" in table.loc["genept_v1_archive", "note"]


def test_builtin_archive_with_another_md5_is_refused_and_nothing_kept(
    data_dir, http_server, monkeypatch, v2_zip
):
    # The mirror serves a zip in the upstream layout, but not the published bytes.
    http_server.add("genept/v2/GenePT_emebdding_v2.zip", v2_zip["bytes"])
    monkeypatch.setenv("SCELMO_DATA_MIRROR", http_server.url(""))
    with pytest.raises(ValueError, match="md5") as err:
        se.GeneEmbeddings.load("genept_ada_text")
    assert "3f6ce4317e3a0091978ae5cb8fbf05a3" in str(err.value)
    assert md5(v2_zip["bytes"]) in str(err.value)
    assert http_server.requests == ["/genept/v2/GenePT_emebdding_v2.zip"]
    assert [p for p in data_dir.rglob("*") if p.is_file()] == []


# --- the whole path over HTTP ----------------------------------------------------------------


def test_archive_members_are_extracted_verified_and_loaded(data_dir, http_server, v2_zip):
    url = http_server.add("records/10833191/files/GenePT_emebdding_v2.zip", v2_zip["bytes"]) + "?download=1"
    register_copies(url, v2_zip["bytes"])

    table = se.GeneEmbeddings.load("t_genept_ada_text")  # no trusted=True
    assert http_server.requests == ["/records/10833191/files/GenePT_emebdding_v2.zip?download=1"]
    assert table.genes.tolist() == list(v2_zip["ada"])
    np.testing.assert_array_equal(table.vectors, np.asarray(list(v2_zip["ada"].values()), dtype=np.float32))
    assert table.provenance["archive_member"] == ADA
    assert table.provenance["archive_md5"] == md5(v2_zip["bytes"])

    folder = data_dir / "genept" / "v2"
    # Only the member asked for was extracted, under its exact name.
    assert sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()) == [
        "GenePT_emebdding_v2.zip",
        ADA,
    ]
    assert (folder / ADA).read_bytes() == v2_zip["members"][ADA]
    manifest = json.loads((data_dir / "extracted" / "t_genept_v2_archive.json").read_text())
    assert manifest["verified_by"] == f"md5:{md5(v2_zip['bytes'])}"
    assert manifest["members"][f"genept/v2/{ADA}"]["sha256"] == sha(v2_zip["members"][ADA])
    assert ds.verified_sha256("t_genept_ada_text") == sha(v2_zip["members"][ADA])

    model_3 = se.GeneEmbeddings.load("t_genept_model_3_text")
    path = ds.fetch("t_genept_model_3_text")
    assert path.name == "GenePT_gene_protein_embedding_model_3_text.pickle."
    assert path.read_bytes() == v2_zip["members"][MODEL_3]
    assert model_3.dim == 12
    np.testing.assert_array_equal(model_3["TP53"], np.float32(v2_zip["model_3"]["TP53"]))
    assert (
        json.loads(ds.fetch("t_genept_ncbi_summaries").read_text())["CD3E"] == "T-cell surface glycoprotein."
    )
    assert http_server.requests == ["/records/10833191/files/GenePT_emebdding_v2.zip?download=1"]
    assert leftovers(data_dir) == []

    # Extracted members stay usable without the archive (574 MB that need not be kept).
    (folder / "GenePT_emebdding_v2.zip").unlink()
    assert se.GeneEmbeddings.load("t_genept_ada_text") == table
    assert len(http_server.requests) == 1


def test_wrong_md5_is_refused_and_nothing_kept(data_dir, http_server, v2_zip):
    url = http_server.add("GenePT_emebdding_v2.zip", v2_zip["bytes"])
    register_copies(url, v2_zip["bytes"])
    ds.register("t_genept_v2_archive", url=url, sha256="unknown", md5="0" * 32, filename="genept/v2/a.zip")
    with pytest.raises(ValueError, match=f"md5 {md5(v2_zip['bytes'])}, but 0{{32}} is expected"):
        se.GeneEmbeddings.load("t_genept_ada_text")
    assert [p for p in data_dir.rglob("*") if p.is_file() and p.name != "registry.json"] == []


class _Payload:
    """Unpickling this creates a file: proof of whether a pickle was loaded."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_member_changed_after_extraction_is_never_unpickled(data_dir, http_server, v2_zip, tmp_path, caplog):
    url = http_server.add("GenePT_emebdding_v2.zip", v2_zip["bytes"])
    register_copies(url, v2_zip["bytes"])
    genuine = se.GeneEmbeddings.load("t_genept_ada_text")
    path = ds.fetch("t_genept_ada_text")
    marker = tmp_path / "code-ran"
    swapped = pickle.dumps(_Payload(marker))

    # Swapped after fetch, before reading: the recorded sha256 refuses it.
    path.write_bytes(swapped)
    with pytest.raises(ValueError, match="Refusing to unpickle"):
        se.GeneEmbeddings.read(path, sha256=ds.verified_sha256("t_genept_ada_text"))
    # load notices the change and extracts the member again from the verified archive.
    with caplog.at_level("WARNING", logger="scelmo"):
        assert se.GeneEmbeddings.load("t_genept_ada_text") == genuine
    assert "extracting it again" in caplog.text
    assert path.read_bytes() == v2_zip["members"][ADA]

    # Without the archive and with the host gone, the swapped member is refused outright.
    (data_dir / "genept" / "v2" / "GenePT_emebdding_v2.zip").unlink()
    path.write_bytes(swapped)
    http_server.stop()
    with pytest.raises(OSError, match="Could not download"):
        se.GeneEmbeddings.load("t_genept_ada_text")
    assert not marker.exists()


def test_builtin_names_with_a_locally_registered_archive(data_dir, tmp_path, v2_zip):
    copy = tmp_path / "GenePT_emebdding_v2.zip"
    copy.write_bytes(v2_zip["bytes"])
    with pytest.raises(ValueError, match="published md5 is 3f6ce4317e3a0091978ae5cb8fbf05a3"):
        ds.register_local("genept_v2_archive", copy)
    ds.register_local("genept_v2_archive", copy, sha256=sha(v2_zip["bytes"]))
    table = se.GeneEmbeddings.load("genept_ada_text")
    assert table.genes.tolist() == list(v2_zip["ada"])
    assert ds.fetch("genept_model_3_text") == data_dir / "genept" / "v2" / MODEL_3
    assert se.GeneEmbeddings.load("genept_model_3_text").dim == 12


# --- the third-party record: __MACOSX entries and a member known by file name only --------------


def test_member_by_file_name_ignores_macosx_entries(data_dir, http_server):
    table = {"CD3E": [1.0, 2.0], "TP53": [3.0, 4.0]}
    content = zip_bytes(
        {
            "data_embedding/GPT_3_5_gene_embeddings.pickle": pickle.dumps(table),
            "__MACOSX/data_embedding/._GPT_3_5_gene_embeddings.pickle": b"\x00\x05\x16\x07 resource fork",
            "__MACOSX/._data_embedding": b"\x00\x05\x16\x07",
        }
    )
    builtin = ds.entry("genept_gpt_3_5")
    ds.register(
        "t_v1", url=http_server.add("data_embedding.zip", content), sha256="unknown", md5=md5(content)
    )
    ds.register("t_gpt", archive="t_v1", member=builtin["member"], sha256="unknown")
    loaded = se.GeneEmbeddings.load("t_gpt")
    np.testing.assert_array_equal(loaded["TP53"], [3.0, 4.0])
    assert ds.fetch("t_gpt") == data_dir / "t_v1" / "GPT_3_5_gene_embeddings.pickle"
    assert not (data_dir / "__MACOSX").exists()
    assert not list(data_dir.rglob("._*"))


def test_member_file_name_matching_several_entries_is_an_error(data_dir, http_server):
    content = zip_bytes({"a/table.pickle": b"1", "b/table.pickle": b"2"})
    ds.register("t_arc", url=http_server.add("a.zip", content), sha256="unknown", md5=md5(content))
    ds.register("t_member", archive="t_arc", member="table.pickle", sha256="unknown")
    with pytest.raises(ValueError, match=r"several entries named 'table.pickle'.*full path"):
        ds.fetch("t_member")


def test_missing_member_lists_what_the_archive_holds(data_dir, http_server, v2_zip):
    ds.register(
        "t_arc", url=http_server.add("a.zip", v2_zip["bytes"]), sha256="unknown", md5=md5(v2_zip["bytes"])
    )
    ds.register(
        "t_member", archive="t_arc", member=f"{V2}/GenePT_gene_embedding_ada_text.pickle.", sha256="unknown"
    )
    with pytest.raises(
        ValueError, match=r"no member .*ada_text\.pickle\.'; it holds .*model_3_text\.pickle\.'"
    ):
        ds.fetch("t_member")
    assert not (data_dir / "t_arc" / V2).exists()


# --- zip slip and damaged archives ------------------------------------------------------------


@pytest.mark.parametrize(
    "member", ["../evil.pickle", "/etc/evil.pickle", "a/../../evil.pickle", "C:/evil", "a\\..\\evil"]
)
def test_member_names_that_leave_the_folder_are_refused(data_dir, member):
    with pytest.raises(ValueError, match="cannot point outside the data folder"):
        ds.register("t_member", archive="genept_v2_archive", member=member, sha256="unknown")


def test_archive_entry_that_leaves_the_folder_is_refused(data_dir, http_server, tmp_path):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        # zipfile.writestr keeps the name as given: a hostile archive.
        archive.writestr("../../evil.pickle", pickle.dumps({"A": [1.0]}))
    content = buffer.getvalue()
    assert zipfile.ZipFile(io.BytesIO(content)).namelist() == ["../../evil.pickle"]
    ds.register("t_arc", url=http_server.add("evil.zip", content), sha256="unknown", md5=md5(content))
    ds.register("t_member", archive="t_arc", member="evil.pickle", sha256="unknown")
    with pytest.raises(ValueError, match=r"'\.\./\.\./evil\.pickle'.*cannot point outside"):
        ds.fetch("t_member")
    assert not list(tmp_path.rglob("evil.pickle"))
    assert leftovers(data_dir) == []


def test_damaged_archive_with_the_right_md5_is_an_error(data_dir, http_server, v2_zip):
    content = v2_zip["bytes"][: len(v2_zip["bytes"]) // 2]
    ds.register("t_arc", url=http_server.add("a.zip", content), sha256="unknown", md5=md5(content))
    ds.register("t_member", archive="t_arc", member=ADA, sha256="unknown")
    with pytest.raises(ValueError, match="damaged or not a plain zip archive"):
        ds.fetch("t_member")
    assert not (data_dir / "t_arc" / ADA).exists()
    assert leftovers(data_dir) == []


def test_members_of_an_unverified_archive_need_trust(data_dir, http_server, v2_zip):
    ds.register("t_arc", url=http_server.add("a.zip", v2_zip["bytes"]), sha256="unknown")
    ds.register("t_member", archive="t_arc", member=ADA, sha256="unknown")
    with (
        pytest.warns(UserWarning, match="cannot be verified"),
        pytest.raises(ValueError, match="trusted=True"),
    ):
        se.GeneEmbeddings.load("t_member")
    assert ds.verified_sha256("t_member") is None
    assert se.GeneEmbeddings.load("t_member", trusted=True).genes.tolist() == list(v2_zip["ada"])


def test_member_with_a_pinned_sha256_is_checked(data_dir, http_server, v2_zip):
    content = v2_zip["bytes"]
    ds.register("t_arc", url=http_server.add("a.zip", content), sha256=sha(content))
    ds.register("t_member", archive="t_arc", member=ADA, sha256="1" * 64)
    with pytest.raises(ValueError, match=f"{sha(v2_zip['members'][ADA])}, but 1{{64}} is registered"):
        ds.fetch("t_member")
    assert not (data_dir / "t_arc" / ADA).exists()
    ds.register("t_member", archive="t_arc", member=ADA, sha256=sha(v2_zip["members"][ADA]))
    assert ds.verified_sha256("t_member") == sha(v2_zip["members"][ADA])
    assert se.GeneEmbeddings.load("t_member").genes.tolist() == list(v2_zip["ada"])
