"""Small real data sets for the experiments, loaded without any download.

Old Faithful is bundled as ``data/faithful.csv`` (R's ``datasets::faithful``);
iris and wine come from scikit-learn's bundled copies (``pip install -e
".[experiments]"``).
"""

from __future__ import annotations

import pathlib
from collections.abc import Callable

import numpy as np

__all__ = ["DATASETS", "load_faithful", "load_iris", "load_wine"]

DATA_DIR = pathlib.Path(__file__).resolve().parent / "data"


def load_faithful() -> np.ndarray:
    """Old Faithful geyser eruptions (R's ``datasets::faithful``).

    Returns:
        A (272, 2) float64 array; column 0 is the eruption duration and column 1
        the waiting time to the next eruption, both in minutes.
    """
    return np.loadtxt(DATA_DIR / "faithful.csv", delimiter=",", skiprows=1, dtype=np.float64)


def _sklearn_datasets():
    try:
        import sklearn.datasets
    except ImportError as err:
        raise ImportError(
            'this data set needs scikit-learn; install it with pip install -e ".[experiments]"'
        ) from err
    return sklearn.datasets


def load_iris() -> tuple[np.ndarray, np.ndarray]:
    """Fisher's iris flowers, from scikit-learn's bundled copy.

    Returns:
        ``(X, y)``: X is (150, 4) float64 (sepal length, sepal width, petal length,
        petal width, in cm); y is (150,) int with the species 0, 1, 2.

    Raises:
        ImportError: scikit-learn is not installed.
    """
    data = _sklearn_datasets().load_iris()
    return np.asarray(data.data, np.float64), np.asarray(data.target, int)


def load_wine() -> tuple[np.ndarray, np.ndarray]:
    """UCI wine recognition data, from scikit-learn's bundled copy.

    Returns:
        ``(X, y)``: X is (178, 13) float64 chemical measurements (features on very
        different scales); y is (178,) int with the cultivar 0, 1, 2.

    Raises:
        ImportError: scikit-learn is not installed.
    """
    data = _sklearn_datasets().load_wine()
    return np.asarray(data.data, np.float64), np.asarray(data.target, int)


DATASETS: dict[str, Callable[[], np.ndarray]] = {
    "faithful": load_faithful,
    "iris": lambda: load_iris()[0],
    "wine": lambda: load_wine()[0],
}
"""Data set name -> loader returning the (N, D) float64 feature matrix only."""
