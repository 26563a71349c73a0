"""Data and parameter builders shared by the tests."""

from __future__ import annotations

import numpy as np

from jaxem import gmm

COVARIANCE_TYPES = gmm.COVARIANCE_TYPES


def blobs(seed: int = 0, n: int = 300, d: int = 3, k: int = 3, spread: float = 4.0):
    """(n, d) float64 data from k anisotropic Gaussian clusters."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(scale=spread, size=(k, d))
    labels = rng.integers(k, size=n)
    mixing = rng.normal(size=(k, d, d)) * 0.5 + np.eye(d)
    x = centers[labels] + np.einsum("nd,nde->ne", rng.normal(size=(n, d)), mixing[labels])
    return x


def random_params(seed: int, k: int, d: int, covariance_type: str, x: np.ndarray | None = None):
    """Random valid parameters as NumPy arrays (weights, means, covariances)."""
    rng = np.random.default_rng(seed)
    weights = rng.uniform(0.5, 1.5, size=k)
    weights /= weights.sum()
    if x is not None:
        means = x[rng.choice(len(x), size=k, replace=False)] + rng.normal(scale=0.1, size=(k, d))
    else:
        means = rng.normal(scale=3, size=(k, d))
    if covariance_type == "full":
        a = rng.normal(size=(k, d, d))
        cov = a @ np.swapaxes(a, -1, -2) / d + np.eye(d)
    elif covariance_type == "tied":
        a = rng.normal(size=(d, d))
        cov = a @ a.T / d + np.eye(d)
    elif covariance_type == "diag":
        cov = rng.uniform(0.5, 2.0, size=(k, d))
    else:
        cov = rng.uniform(0.5, 2.0, size=k)
    return weights, means, cov


def precisions_from_covariances(cov: np.ndarray, covariance_type: str) -> np.ndarray:
    if covariance_type in ("full", "tied"):
        return np.linalg.inv(cov)
    return 1.0 / cov
