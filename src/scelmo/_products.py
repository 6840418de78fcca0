"""Block x gene-table products with the fastest kernel available on the machine.

Measured on a 2-core AVX-512 CPU (cells x 20k genes, ~1,500 non-zeros per cell, 1536-d table):
a CSR x dense product is bound by memory traffic, because every non-zero pulls a whole table
row (6 KiB) from RAM. Splitting the table into 64-column blocks keeps each block (20k x 64 x 4
bytes = 5 MiB) in cache, which makes torch's CSR kernel about 4x faster than on the whole
table, and faster than a dense float32 GEMM on the densified block. Our numba kernel
(:mod:`scelmo._numba_kernel`) also splits the genes into 512-gene blocks, so the table part in
use stays in L2, and keeps its accumulators in vector registers: about 3-4x less CPU time
than torch over 64-column blocks, so ``"auto"`` uses it (numba comes with scanpy). Without it,
torch; without torch, a dense float32 GEMM on small densified row blocks beats scipy's
single-threaded CSR kernel whenever the matrix is not very sparse.
"""

from __future__ import annotations

import warnings
from typing import Any, Literal

import numpy as np
import scipy.sparse as sp

from ._logging import logger
from ._optional import import_optional, installed

Backend = Literal["auto", "numba", "torch", "numpy", "scipy"]
BACKENDS = ("auto", "numba", "torch", "numpy", "scipy")

#: Table columns per torch product: a 20k-gene block of 64 float32 columns stays in cache.
TORCH_COLUMN_BLOCK = 64
#: Bytes of a densified block in the numpy kernel: small enough to stay cheap, large enough for BLAS.
DENSE_BLOCK_BYTES = 1 << 27
#: Below this density scipy's sparse kernel beats densify-and-GEMM.
DENSE_GEMM_MIN_DENSITY = 0.02


def resolve_backend(backend: Backend) -> Backend:
    """The kernel ``"auto"`` stands for here: numba, else torch, else numpy/scipy per block."""
    if backend not in BACKENDS:
        raise ValueError(f"`backend` must be one of {BACKENDS}, got {backend!r}.")
    if backend == "torch" and not installed("torch"):
        import_optional("torch", purpose="backend='torch'")
    if backend == "numba" and not installed("numba"):
        raise ImportError("backend='numba' needs numba, which is not installed: pip install numba")
    if backend == "auto":
        if installed("numba"):
            return "numba"
        return "torch" if installed("torch") else "auto"
    return backend


class TableProduct:
    """Multiplies row blocks of a cells x genes matrix by a fixed gene table ``E``.

    Parameters
    ----------
    table
        Genes x dims float32 matrix (rows of unmatched genes are zero).
    backend
        ``"numba"`` (:mod:`scelmo._numba_kernel`), ``"torch"`` (CSR kernel over 64-column table
        blocks), ``"numpy"`` (densified blocks, BLAS), ``"scipy"`` or ``"auto"`` (the first of
        numba and torch that is installed, else numpy or scipy by density). Dense blocks always
        use BLAS.
    """

    def __init__(self, table: np.ndarray, backend: Backend = "auto") -> None:
        self.table = np.ascontiguousarray(table, dtype=np.float32)
        self._chose_numba = backend == "auto"
        self._setup(resolve_backend(backend))

    def _setup(self, backend: Backend) -> None:
        self.backend: Backend = backend
        self._torch_blocks = None
        self._tiles = None
        if self.backend == "numba":
            from ._numba_kernel import tile_table

            self._tiles = tile_table(self.table)
        elif self.backend == "torch":
            import torch

            self._torch = torch
            dim = self.table.shape[1]
            self._torch_blocks = [
                (
                    start,
                    min(start + TORCH_COLUMN_BLOCK, dim),
                    torch.from_numpy(np.array(self.table[:, start : start + TORCH_COLUMN_BLOCK], order="C")),
                )
                for start in range(0, dim, TORCH_COLUMN_BLOCK)
            ]

    def __getstate__(self) -> dict[str, Any]:
        # Sent to dask workers once per graph: the tiles travel with the table, the module does not.
        state = self.__dict__.copy()
        state.pop("_torch", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        if self.backend == "torch":
            import torch

            self._torch = torch

    def into(self, block: np.ndarray | sp.csr_matrix, out: np.ndarray) -> None:
        """Write ``block @ table`` into ``out`` (a C-contiguous float32 view)."""
        if isinstance(block, np.ndarray):
            np.matmul(block, self.table, out=out)
            return
        if self.backend == "numba":
            self._numba_sparse(block, out)
        elif self.backend == "torch":
            self._torch_sparse(block, out)
        elif self.backend == "scipy" or (
            self.backend == "auto" and block.nnz < DENSE_GEMM_MIN_DENSITY * block.shape[0] * block.shape[1]
        ):
            out[...] = block @ self.table
        else:
            self._dense_gemm(block, out)

    def _dense_gemm(self, block: sp.csr_matrix, out: np.ndarray) -> None:
        rows = max(1, DENSE_BLOCK_BYTES // (4 * block.shape[1]))
        for start in range(0, block.shape[0], rows):
            stop = min(start + rows, block.shape[0])
            np.matmul(block[start:stop].toarray(), self.table, out=out[start:stop])

    def _numba_sparse(self, block: sp.csr_matrix, out: np.ndarray) -> None:
        from ._numba_kernel import csr_tiles_product

        if block.format != "csr":
            block = block.tocsr()
        data = np.ascontiguousarray(block.data, dtype=np.float32)
        target = (
            out if out.flags.c_contiguous and out.dtype == np.float32 else np.empty(out.shape, np.float32)
        )
        assert self._tiles is not None  # _setup("numba") made them
        try:
            csr_tiles_product(block.indptr, block.indices, data, self._tiles, target)
        except ValueError:
            raise
        except Exception as err:  # the kernel failed to compile on this platform
            if not self._chose_numba:
                raise
            fallback: Backend = "torch" if installed("torch") else "auto"
            logger.warning(
                "numba kernel unavailable (%s: %s); using backend %r", type(err).__name__, err, fallback
            )
            self._chose_numba = False
            self._setup(fallback)
            self.into(block, out)
            return
        if target is not out:
            out[...] = target

    def _torch_sparse(self, block: sp.csr_matrix, out: np.ndarray) -> None:
        torch = self._torch
        if block.nnz == 0:
            out[...] = 0
            return
        index_dtype = np.int32 if block.nnz < np.iinfo(np.int32).max else np.int64
        with warnings.catch_warnings():
            # torch flags its CSR support as beta on every construction; the product we use is stable.
            warnings.filterwarnings("ignore", message=".*Sparse CSR tensor support is in beta.*")
            sparse = torch.sparse_csr_tensor(
                torch.from_numpy(block.indptr.astype(index_dtype, copy=False)),
                torch.from_numpy(block.indices.astype(index_dtype, copy=False)),
                torch.from_numpy(block.data),
                size=block.shape,
                check_invariants=False,
            )
        assert self._torch_blocks is not None  # _setup("torch") made them
        for start, stop, columns in self._torch_blocks:
            out[:, start:stop] = (sparse @ columns).numpy()
