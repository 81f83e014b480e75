"""The streamed least squares against scikit-learn's fits of the whole matrix."""

import numpy as np
import pytest
from sklearn.linear_model import LinearRegression, Ridge

from drx_workflows.mliap.linear_fit import StreamingLeastSquares


def _blocks_with_missing_columns(seed=0, n_blocks=6, rows=40, cols=30):
    """Blocks in which, as in SNAP, whole column ranges (elements a cell lacks) are exactly zero."""
    rng = np.random.default_rng(seed)
    xs, ys, ws = [], [], []
    for k in range(n_blocks):
        x = rng.normal(size=(rows, cols))
        if k % 3:  # two blocks of three miss a third of the columns
            x[:, (k * 7) % cols: (k * 7) % cols + cols // 3] = 0.0
        xs.append(x)
        ys.append(x @ rng.normal(size=cols) + rng.normal(scale=0.1, size=rows))
        ws.append(rng.uniform(0.5, 2.0, size=rows))
    return xs, ys, ws


@pytest.mark.parametrize("alpha", [0.0, 0.3])
def test_streamed_fit_equals_the_whole_matrix_fit(alpha):
    xs, ys, ws = _blocks_with_missing_columns()
    fit = StreamingLeastSquares(alpha=alpha)
    for x, y, w in zip(xs, ys, ws):
        fit.add(x, y, w)
    x, y, w = np.vstack(xs), np.concatenate(ys), np.concatenate(ws)
    model = Ridge(alpha=alpha, fit_intercept=False) if alpha else LinearRegression(fit_intercept=False)
    reference = model.fit(x, y, sample_weight=w).coef_
    assert fit.n_rows == y.size and fit.n_features == x.shape[1]
    np.testing.assert_allclose(fit.solve(), reference, rtol=1e-9, atol=1e-11)


def test_blocks_must_agree_in_shape():
    fit = StreamingLeastSquares(alpha=1.0)
    fit.add(np.ones((3, 4)), np.ones(3))
    with pytest.raises(ValueError, match="features"):
        fit.add(np.ones((3, 5)), np.ones(3))
    with pytest.raises(ValueError, match="weights"):
        fit.add(np.ones((3, 4)), np.ones(3), np.ones(2))
    with pytest.raises(ValueError, match="no rows"):
        StreamingLeastSquares().solve()
