"""The experiments' data loaders and the README's demonstration script."""

import pathlib
import sys

import numpy as np
import pytest

EXPERIMENTS = pathlib.Path(__file__).resolve().parents[1] / "experiments"
sys.path.insert(0, str(EXPERIMENTS))

import datasets  # noqa: E402


def test_datasets_load():
    x = datasets.load_faithful()
    assert x.shape == (272, 2)
    assert x.dtype == np.float64
    np.testing.assert_array_equal(x[0], [3.6, 79.0])
    for name, n, d in (("iris", 150, 4), ("wine", 178, 13)):
        features, labels = getattr(datasets, f"load_{name}")()
        assert features.shape == (n, d)
        assert features.dtype == np.float64
        assert labels.shape == (n,)
        assert np.issubdtype(labels.dtype, np.integer)
        assert datasets.DATASETS[name]().shape == (n, d)
    assert datasets.DATASETS["faithful"]().shape == (272, 2)


def test_demo_chooses_mclust_model(tmp_path):
    pytest.importorskip("matplotlib")  # in the "experiments" extra, not "test"
    import demo

    result = demo.main(["--n-init", "2", "--out", str(tmp_path)])
    for name in ("faithful_clusters.png", "faithful_bic.png"):
        path = tmp_path / name
        assert path.is_file()
        assert path.stat().st_size > 0
    # R's mclust: EEE (tied), G = 3, BIC -2314.316 with its sign (higher is better).
    assert result.best_covariance_type == "tied"
    assert result.best_n_components == 3
    i = result.covariance_types.index("tied")
    j = list(result.n_components).index(3)
    assert float(result.scores[i, j]) == pytest.approx(2314.316, abs=0.5)
