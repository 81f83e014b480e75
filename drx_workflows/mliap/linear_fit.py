"""Weighted linear least squares fed one block of rows at a time: the design matrix is never held whole.

SNAP's design matrix has one row per energy and per force component (~100 rows per 32-atom cell) and,
for quadratic SNAP, ~500 columns per element: 2,000 cells of 11 elements are ~200,000 x 5,456 floats
(8.7 GB) before pandas copies it. Only a square (n_features x n_features) matrix is kept here:

- ``alpha > 0`` (ridge): the normal equations X'WX + alpha I and X'Wy, solved by Cholesky, which is what
  scikit-learn's ``Ridge`` (solver "cholesky", chosen for dense data) computes from the whole matrix; a
  block's products skip its all-zero columns (SNAP's per-element columns of the elements its cells lack,
  so callers group cells by element set);
- ``alpha == 0`` (plain least squares): a QR factor R updated block by block (R of [R; sqrt(W) X_block]),
  then the minimum-norm solution of R w = Q'y, the same problem ``LinearRegression`` hands to LAPACK's
  SVD solver, without squaring the condition number.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class StreamingLeastSquares:
    """Minimise sum_i w_i (y_i - x_i . b)^2 + alpha |b|^2 over row blocks given to :meth:`add`."""

    alpha: float = 0.0
    n_rows: int = 0
    _a: np.ndarray | None = field(default=None, repr=False)  # X'WX (ridge) or R (QR)
    _b: np.ndarray | None = field(default=None, repr=False)  # X'Wy (ridge) or Q'y (QR)

    def add(self, x: np.ndarray, y: np.ndarray, weights: np.ndarray | None = None) -> None:
        x = np.asarray(x, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64).ravel()
        if x.ndim != 2 or x.shape[0] != y.size:
            raise ValueError(f"a block of {x.shape} features does not match {y.size} targets")
        if weights is not None:
            root = np.sqrt(np.asarray(weights, dtype=np.float64).ravel())
            if root.size != y.size:
                raise ValueError(f"{root.size} weights for {y.size} rows")
            x, y = x * root[:, None], y * root
        if self._a is not None and self._a.shape[1] != x.shape[1]:
            raise ValueError(f"a block of {x.shape[1]} features after blocks of {self._a.shape[1]}")
        self.n_rows += y.size
        if self.alpha > 0:
            if self._a is None:
                self._a = np.zeros((x.shape[1], x.shape[1]))
                self._b = np.zeros(x.shape[1])
            used = np.flatnonzero(np.any(x != 0.0, axis=0))
            if used.size > 0.9 * x.shape[1]:
                self._a += x.T @ x
                self._b += x.T @ y
            else:  # SNAP: a cell's rows are zero in the columns of elements it lacks
                x = x[:, used]
                self._a[np.ix_(used, used)] += x.T @ x
                self._b[used] += x.T @ y
            return
        from scipy.linalg import qr

        if self._a is not None:
            x = np.vstack([self._a, x])
            y = np.concatenate([self._b, y])
        q, r = qr(x, mode="economic", overwrite_a=True, check_finite=False)
        self._a, self._b = r, q.T @ y

    def solve(self) -> np.ndarray:
        if self._a is None:
            raise ValueError("no rows were added")
        if self.alpha > 0:
            from scipy.linalg import solve

            a = self._a.copy()
            a.flat[:: a.shape[0] + 1] += self.alpha
            return solve(a, self._b, assume_a="pos", check_finite=False)
        from scipy.linalg import lstsq

        return lstsq(self._a, self._b, check_finite=False)[0]

    @property
    def n_features(self) -> int:
        return 0 if self._a is None else self._a.shape[1]
