"""Saving and loading scelmo's scvi-tools models without pickle, whole or not at all.

scvi-tools saves a model as ``model.pt``, a pickle of the weights, the variable names and every
attribute ending in ``_``, and loads it with ``torch.load(weights_only=False)``: loading a
folder runs whatever code its pickle names. :class:`SafePersistence` replaces ``save`` and
``load`` of :class:`~scelmo.models.ElmoAdapter` and :class:`~scelmo.models.ElmoPerturbation`
with a folder that holds only data formats that cannot carry code::

    scelmo_model.json        class, variable names, registry and every attribute (tagged JSON)
    model.safetensors        the torch module's state dict
    attributes.safetensors   the numeric arrays among the attributes (kNN reference, indices...)
    adata.h5ad               only with save(..., save_anndata=True)
    scelmo_manifest.json     every file's size and SHA-256, written last

The folder is written by :func:`scelmo.models._checkpoint_folder.checkpoint_folder` (the
package's one mechanism for whole-or-nothing folders, on top of
:func:`scelmo._atomic.atomic_folder`): a save that fails part-way leaves the previous folder as
it was, and a folder missing its manifest, or whose files differ from it, is refused on load
naming the file.

A folder with a ``model.pt`` (saved by scvi-tools, or by scelmo before this format) is refused
unless the caller passes ``trusted=True``; then it is read with ``torch.load(weights_only=True)``
first, and only if that fails with the full unpickler.
"""

from __future__ import annotations

import json
import os
import pickle
import warnings
from collections import defaultdict
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from scelmo._logging import logger
from scelmo.gene_embeddings import GeneEmbeddings

from ._scvi_inputs import check_same_genes

if TYPE_CHECKING:
    import torch
    from anndata import AnnData

#: The file only this format writes; with it and no manifest the save did not finish.
MODEL_JSON = "scelmo_model.json"
WEIGHTS = "model.safetensors"
ARRAYS = "attributes.safetensors"
ADATA = "adata.h5ad"
#: scvi-tools' pickle.
LEGACY = "model.pt"
FORMAT = "scelmo.scvi_model"
VERSION = 1

_TAGS = (
    "__tuple__",
    "__items__",
    "__defaultdict__",
    "__array__",
    "__ndarray__",
    "__scalar__",
    "__index__",
    "__dataframe__",
    "__gene_embeddings__",
)


class UntrustedModelError(ValueError):
    """A model folder holds a pickle (``model.pt``), which can run code when it is loaded.

    Examples
    --------
    >>> from scelmo.models import UntrustedModelError
    >>> issubclass(UntrustedModelError, ValueError)
    True
    """


# --- attributes <-> JSON + arrays ----------------------------------------------------------------


def encode(value: Any, path: str, arrays: dict[str, np.ndarray]) -> Any:
    """``value`` as JSON-serialisable data; numeric arrays go into ``arrays`` under ``path``.

    Supported: ``None``, ``bool``, ``int``, ``float``, ``str``, lists, tuples, dicts (any keys
    of these types), ``defaultdict(dict|list)``, numpy arrays and scalars, ``pandas.Index``,
    ``pandas.DataFrame`` and :class:`~scelmo.GeneEmbeddings`; anything else raises a
    ``TypeError`` naming ``path``, since it could only be saved as a pickle.

    Examples
    --------
    >>> import numpy as np
    >>> from scelmo.models._scvi_persistence import decode, encode
    >>> arrays = {}
    >>> data = encode({"k": (1, np.arange(3))}, "x", arrays)
    >>> decode(data, arrays)["k"][1].tolist()
    [0, 1, 2]
    """
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, np.generic):
        if value.dtype.kind not in "biuf":
            raise TypeError(f"{path} is a numpy {value.dtype} scalar, which this format cannot hold.")
        return {"__scalar__": [value.dtype.str, value.item()]}
    if isinstance(value, int | float):
        return value
    if isinstance(value, GeneEmbeddings):
        return _encode_gene_embeddings(value, path, arrays)
    if isinstance(value, np.ndarray):
        return _encode_array(value, path, arrays)
    if isinstance(value, pd.DataFrame):
        return _encode_dataframe(value, path, arrays)
    if isinstance(value, pd.Index) and not isinstance(value, pd.MultiIndex):
        return {
            "__index__": [
                encode(value.name, f"{path}/name", arrays),
                _encode_array(value.to_numpy(), path, arrays),
            ]
        }
    if isinstance(value, tuple):
        return {"__tuple__": [encode(v, f"{path}/{i}", arrays) for i, v in enumerate(value)]}
    if isinstance(value, list):
        return [encode(v, f"{path}/{i}", arrays) for i, v in enumerate(value)]
    if isinstance(value, dict):
        items = [(k, encode(v, f"{path}/{k}", arrays)) for k, v in value.items()]
        if isinstance(value, defaultdict):
            factory_names: dict[object, str] = {dict: "dict", list: "list"}
            factory = factory_names.get(value.default_factory)
            if factory is None:
                raise TypeError(
                    f"{path} is a defaultdict({value.default_factory}), which this format cannot hold."
                )
            return {"__defaultdict__": [factory, [[encode(k, f"{path}/key", arrays), v] for k, v in items]]}
        plain = all(isinstance(k, str) for k in value) and not (
            len(value) == 1 and next(iter(value)) in _TAGS
        )
        if plain:
            return dict(items)
        return {"__items__": [[encode(k, f"{path}/key", arrays), v] for k, v in items]}
    raise TypeError(
        f"{path} holds a {type(value).__module__}.{type(value).__name__}, which can only be saved as a pickle. "
        "Store it as numbers, strings, lists, dicts or numpy arrays, or delete the attribute before saving."
    )


def _encode_gene_embeddings(value: GeneEmbeddings, path: str, arrays: dict[str, np.ndarray]) -> Any:
    # Provenance is free-form metadata: kept as GeneEmbeddings.write keeps it (str() of non-JSON values).
    arrays[f"{path}/vectors"] = np.ascontiguousarray(value.vectors)
    return {
        "__gene_embeddings__": {
            "genes": [str(g) for g in value.genes],
            "vectors": f"{path}/vectors",
            "provenance": json.loads(json.dumps(value.provenance, default=str)),
        }
    }


def _encode_dataframe(value: pd.DataFrame, path: str, arrays: dict[str, np.ndarray]) -> Any:
    columns = [
        [
            encode(name, f"{path}/column{i}", arrays),
            _encode_array(value.iloc[:, i].to_numpy(), f"{path}/{i}", arrays),
        ]
        for i, name in enumerate(value.columns)
    ]
    return {"__dataframe__": {"index": encode(value.index, f"{path}/index", arrays), "columns": columns}}


def _encode_array(value: np.ndarray, path: str, arrays: dict[str, np.ndarray]) -> Any:
    if value.dtype.kind in "biuf":
        if path in arrays:
            raise ValueError(f"Two arrays would be stored under {path!r}.")
        arrays[path] = np.ascontiguousarray(value).astype(value.dtype.newbyteorder("="), copy=False)
        return {"__array__": path}
    if value.dtype.kind in "UO":
        # Object arrays (scvi-tools' category names) may hold numpy scalars: keep their Python value.
        flat = [v.item() if isinstance(v, np.generic) else v for v in value.ravel().tolist()]
        bad = [v for v in flat if not (v is None or isinstance(v, bool | int | float | str))]
        if bad:
            raise TypeError(
                f"{path} is an object array holding a {type(bad[0]).__name__}, which can only be saved as a pickle."
            )
        return {"__ndarray__": [value.dtype.str, list(value.shape), flat]}
    raise TypeError(f"{path} is a numpy array of dtype {value.dtype}, which this format cannot hold.")


def decode(value: Any, arrays: dict[str, np.ndarray]) -> Any:
    """The inverse of :func:`encode`.

    Examples
    --------
    >>> from scelmo.models._scvi_persistence import decode
    >>> decode({"__tuple__": [1, "a"]}, {})
    (1, 'a')
    """
    if isinstance(value, list):
        return [decode(v, arrays) for v in value]
    if not isinstance(value, dict):
        return value
    if len(value) == 1 and next(iter(value)) in _TAGS:
        tag, body = next(iter(value.items()))
        if tag == "__tuple__":
            return tuple(decode(v, arrays) for v in body)
        if tag == "__items__":
            return {decode(k, arrays): decode(v, arrays) for k, v in body}
        if tag == "__defaultdict__":
            factory, items = body
            restored: defaultdict[Any, Any] = defaultdict({"dict": dict, "list": list}[factory])
            restored.update({decode(k, arrays): decode(v, arrays) for k, v in items})
            return restored
        if tag == "__array__":
            if body not in arrays:
                raise ValueError(f"The array {body!r} is missing from {ARRAYS}.")
            return arrays[body]
        if tag == "__ndarray__":
            dtype, shape, flat = body
            out = np.empty(len(flat), dtype=np.dtype(dtype))
            out[:] = flat
            return out.reshape(shape)
        if tag == "__scalar__":
            dtype, item = body
            return np.dtype(dtype).type(item)
        if tag == "__index__":
            name, data = body
            return pd.Index(decode(data, arrays), name=decode(name, arrays))
        if tag == "__dataframe__":
            index = decode(body["index"], arrays)
            columns = [(decode(name, arrays), decode(data, arrays)) for name, data in body["columns"]]
            frame = pd.DataFrame({i: data for i, (_, data) in enumerate(columns)}, index=index)
            frame.columns = pd.Index([name for name, _ in columns])
            return frame
        if tag == "__gene_embeddings__":
            return GeneEmbeddings(
                body["genes"],
                decode({"__array__": body["vectors"]}, arrays),
                provenance=body["provenance"],
            )
    return {k: decode(v, arrays) for k, v in value.items()}


# --- the mixin -----------------------------------------------------------------------------------


def _writer(cls: type) -> str:
    return f"scelmo.{cls.__name__}"


class SafePersistence:
    """``save`` / ``load`` for scvi-tools models in safe formats (no pickle), whole or not at all.

    Part of :class:`scelmo.models._scvi_base.ScviModel`, the base of
    :class:`~scelmo.models.ElmoAdapter` and :class:`~scelmo.models.ElmoPerturbation` (mixed in
    before :class:`scvi.model.base.BaseModelClass`); the folder layout is in
    :mod:`scelmo.models._scvi_persistence`.

    Examples
    --------
    >>> model.save("adapter/", overwrite=True)  # doctest: +SKIP
    >>> model = se.models.ElmoAdapter.load("adapter/", adata)  # doctest: +SKIP
    """

    def save(
        self,
        dir_path: str | os.PathLike[str],
        *,
        overwrite: bool = False,
        save_anndata: bool = False,
        **anndata_write_kwargs: Any,
    ) -> None:
        """Save the model into the folder ``dir_path`` (weights, attributes, optionally the AnnData).

        The folder holds ``scelmo_model.json``, ``model.safetensors``, ``attributes.safetensors``,
        ``adata.h5ad`` with ``save_anndata`` and, written last, ``scelmo_manifest.json`` (each
        file's size and SHA-256). It appears whole or not at all: a save that fails part-way
        (a full disk, an error, Ctrl-C) leaves an existing folder as it was. No file is a pickle,
        so loading the folder cannot run code from it.

        Parameters
        ----------
        dir_path
            The folder to create.
        overwrite
            Replace an existing, non-empty model folder (one saved by a model, never a folder
            holding other files).
        save_anndata
            Also save the model's AnnData, as ``adata.h5ad``.
        **anndata_write_kwargs
            Passed to :meth:`anndata.AnnData.write_h5ad`.

        Raises
        ------
        FileExistsError
            If ``dir_path`` is not empty and ``overwrite`` is false, or holds no model.
        TypeError
            If an attribute ending in ``_`` holds an object that could only be saved as a pickle.

        Examples
        --------
        >>> model.save("adapter/", overwrite=True)  # doctest: +SKIP
        """
        import safetensors.numpy
        import safetensors.torch

        from ._checkpoint_folder import checkpoint_folder

        cls = type(self)
        if save_anndata and self.adata is None:  # type: ignore[attr-defined]
            raise ValueError("save_anndata=True, but this model has no AnnData (it was loaded without one).")
        # Encode before anything is written: an attribute that cannot be saved fails the save early.
        arrays: dict[str, np.ndarray] = {}
        attributes = {
            name: encode(value, name, arrays)
            for name, value in self._get_user_attributes()  # type: ignore[attr-defined]
            if name.endswith("_")
        }
        var_names = [str(v) for v in np.asarray(self.get_var_names()).ravel()]  # type: ignore[attr-defined]
        state = {
            key: value.detach().to("cpu").contiguous().clone()
            for key, value in self.module.state_dict().items()  # type: ignore[attr-defined]
        }
        with checkpoint_folder(
            dir_path,
            overwrite=overwrite,
            writer=_writer(cls),
            version=VERSION,
            replaceable=(MODEL_JSON, LEGACY),
        ) as folder:
            write_weights(state, folder / WEIGHTS, safetensors.torch)
            write_arrays(arrays, folder / ARRAYS, safetensors.numpy)
            write_json(
                {
                    "format": FORMAT,
                    "version": VERSION,
                    "class": cls.__name__,
                    "var_names": var_names,
                    "attributes": attributes,
                },
                folder / MODEL_JSON,
            )
            if save_anndata:
                self.adata.write_h5ad(folder / ADATA, **anndata_write_kwargs)  # type: ignore[attr-defined]
        logger.info("%s saved to %s", cls.__name__, dir_path)

    @classmethod
    def load(
        cls,
        dir_path: str | os.PathLike[str],
        adata: AnnData | None = None,
        *,
        accelerator: str = "auto",
        device: int | str = "auto",
        trusted: bool = False,
    ) -> Any:
        """Load a model saved by :meth:`save`.

        The folder is checked against its manifest first: a missing, truncated, changed or added
        file is refused, naming it. Only JSON, safetensors and (when ``adata`` is not given)
        ``adata.h5ad`` are read; nothing is unpickled.

        A folder holding scvi-tools' ``model.pt`` (a pickle, as saved by scvi-tools or by older
        scelmo versions) is refused: unpickling it can run any code it names. Pass
        ``trusted=True`` only for a file you made or whose origin you trust; it is then read with
        ``torch.load(weights_only=True)`` and, if that fails, with the full unpickler. Saving the
        loaded model again converts it to the safe format.

        Parameters
        ----------
        dir_path
            The folder.
        adata
            AnnData with the model's genes, in order (``setup_anndata`` is re-run with the saved
            settings). Default: ``adata.h5ad`` from the folder, else no AnnData (a warning says
            so; such a model predicts on AnnData passed to its methods).
        accelerator, device
            Where to put the module (scvi-tools' device arguments).
        trusted
            Allow reading a pickled ``model.pt``.

        Returns
        -------
        The model, in evaluation mode.

        Raises
        ------
        UntrustedModelError
            If the folder holds a pickle and ``trusted`` is false.
        scelmo.models.langcell.CheckpointError
            If the folder is incomplete or its files differ from its manifest, or was saved by
            another class.

        Examples
        --------
        >>> model = se.models.ElmoAdapter.load("adapter/", adata)  # doctest: +SKIP
        >>> old = se.models.ElmoAdapter.load("scvi_folder/", adata, trusted=True)  # doctest: +SKIP
        """
        import anndata
        from scvi.model._utils import parse_device_args

        folder = Path(dir_path)
        if not folder.is_dir():
            raise FileNotFoundError(
                f"{folder} is not a folder: pass the folder given to {cls.__name__}.save."
            )
        _, _, torch_device = parse_device_args(
            accelerator=accelerator, devices=device, return_device="torch", validate_single_device=True
        )
        from ._checkpoint_folder import MANIFEST

        if any((folder / name).exists() for name in (MODEL_JSON, MANIFEST)) or not (folder / LEGACY).exists():
            var_names, attributes, state = read_safe_folder(cls, folder)
        else:
            var_names, attributes, state = read_pickled_folder(cls, folder, trusted=trusted)
        if adata is None:
            if (folder / ADATA).is_file():
                adata = anndata.read_h5ad(folder / ADATA)
            else:
                warnings.warn(
                    "Save path contains no saved anndata and no adata was passed. Model will be loaded without "
                    "anndata.",
                    UserWarning,
                    stacklevel=2,
                )
                adata = None
        return _restore(cls, adata, var_names, attributes, state, torch_device)

    @classmethod
    def load_registry(cls, dir_path: str | os.PathLike[str], prefix: str | None = None) -> dict:
        """The registry (setup arguments and data fields) of a saved model, read without pickle.

        Examples
        --------
        >>> se.models.ElmoAdapter.load_registry("adapter/")["setup_args"]  # doctest: +SKIP
        {'labels_key': 'cell_type', 'batch_key': None, 'layer': None}
        """
        if prefix:
            raise ValueError("This format has no file prefix.")
        _, attributes, _ = read_safe_folder(cls, Path(dir_path))
        return attributes["registry_"]

    @classmethod
    def convert_legacy_save(cls, *args: Any, **kwargs: Any) -> None:
        """Not supported: legacy scvi-tools files are pickles.

        Load a trusted ``model.pt`` folder with ``load(..., trusted=True)`` and save it again.

        Examples
        --------
        >>> se.models.ElmoAdapter.convert_legacy_save("old/", "new/")  # doctest: +SKIP
        Traceback (most recent call last):
        NotImplementedError: ...
        """
        raise NotImplementedError(
            f"{cls.__name__} does not read legacy scvi-tools files (pickles). Load a folder you trust with "
            f"{cls.__name__}.load(path, adata, trusted=True) and save it again to convert it."
        )


# --- the parts -----------------------------------------------------------------------------------


def write_weights(state: dict[str, torch.Tensor], path: Path, safetensors_torch: ModuleType) -> None:
    """Write the module's state dict as safetensors."""
    safetensors_torch.save_file(state, str(path), metadata={"format": "pt"})


def write_arrays(arrays: dict[str, np.ndarray], path: Path, safetensors_numpy: ModuleType) -> None:
    """Write the attributes' numeric arrays as safetensors."""
    safetensors_numpy.save_file(arrays, str(path))


def write_json(values: dict[str, Any], path: Path) -> None:
    """Write the model's description (class, variable names, attributes) as JSON."""
    with path.open("w", encoding="utf-8") as handle:
        json.dump(values, handle)


def read_safe_folder(cls: type, folder: Path) -> tuple[list[str], dict[str, Any], dict[str, torch.Tensor]]:
    """Variable names, attributes and state dict of a folder saved by :meth:`SafePersistence.save`."""
    import safetensors.numpy
    import safetensors.torch

    from ._checkpoint_folder import CheckpointError, read_json, verify_folder

    if not verify_folder(folder, marker=MODEL_JSON, writer=_writer(cls)):
        raise FileNotFoundError(
            f"{folder} holds no saved model: expected {MODEL_JSON}, {WEIGHTS} and {ARRAYS} (written by "
            f"{cls.__name__}.save)."
        )
    values = read_json(folder / MODEL_JSON, "the model's description")
    if values.get("format") != FORMAT or values.get("class") != cls.__name__:
        raise CheckpointError(
            f"{folder / MODEL_JSON} describes a {values.get('class')!r} model (format {values.get('format')!r}), "
            f"not a {cls.__name__}: load it with the matching class."
        )
    if int(values.get("version", 0)) > VERSION:
        raise CheckpointError(
            f"{folder} was saved by a newer scelmo (format version {values['version']}); upgrade scelmo."
        )
    try:
        arrays = safetensors.numpy.load_file(str(folder / ARRAYS))
        state = safetensors.torch.load_file(str(folder / WEIGHTS), device="cpu")
    except Exception as err:  # safetensors reports a damaged header as several error types
        raise CheckpointError(
            f"{folder} has an unreadable weights file ({type(err).__name__}: {err})."
        ) from err
    attributes = decode(values["attributes"], arrays)
    return [str(v) for v in values["var_names"]], attributes, state


def read_pickled_folder(
    cls: type, folder: Path, *, trusted: bool
) -> tuple[list[str], dict[str, Any], dict[str, torch.Tensor]]:
    """Variable names, attributes and state dict from scvi-tools' pickled ``model.pt``, only if ``trusted``."""
    import torch

    path = folder / LEGACY
    if not trusted:
        raise UntrustedModelError(
            f"{path} is a pickle (saved by scvi-tools, or by an older scelmo), and unpickling it can run any code "
            f"it names, so it is not loaded. If you saved it yourself or trust its origin, load it with "
            f"{cls.__name__}.load({str(folder)!r}, adata, trusted=True), then save it again to convert it to the "
            "safe format."
        )
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)  # noqa: TID251 - tensors only
    except pickle.UnpicklingError:
        logger.warning("%s holds Python objects beyond tensors; unpickling it fully (trusted=True).", path)
        # Reached only with trusted=True (checked above): scvi-tools pickles hold Python objects.
        saved = torch.load(path, map_location="cpu", weights_only=False)  # noqa: TID251
    if not isinstance(saved, dict) or not {"model_state_dict", "var_names", "attr_dict"} <= set(saved):
        raise ValueError(
            f"{path} is not a model saved by scvi-tools (no model_state_dict, var_names, attr_dict)."
        )
    state = {k: v for k, v in saved["model_state_dict"].items() if k != "pyro_param_store"}
    return [str(v) for v in np.asarray(saved["var_names"]).ravel()], dict(saved["attr_dict"]), state


def _restore(
    cls: type,
    adata: AnnData | None,
    var_names: list[str],
    attributes: dict[str, Any],
    state: dict[str, torch.Tensor],
    device: torch.device,
) -> Any:
    """Build the model from its registry and init parameters, then set attributes and weights (scvi-tools' order)."""
    attributes = dict(attributes)
    registry = attributes.pop("registry_")
    if registry.get("model_name", cls.__name__) != cls.__name__:
        raise ValueError(f"The folder holds a {registry['model_name']} model, not a {cls.__name__}.")
    if adata is not None:
        check_same_genes(adata.var_names, var_names, "the saved model")
        cls.setup_anndata(adata, source_registry=registry, **registry["setup_args"])  # type: ignore[attr-defined]
    init_params = attributes.pop("init_params_")
    kwargs = {k: v for group in init_params.get("kwargs", {}).values() for k, v in group.items()}
    model = cls(adata, registry=registry, **init_params["non_kwargs"], **kwargs)
    for name, value in attributes.items():
        setattr(model, name, value)
    model.module.on_load(model)
    model.module.load_state_dict(state, strict=True)
    model.to_device(device)
    model.module.eval()
    if adata is not None:
        model._validate_anndata(adata)
    return model
