"""Fixed starting partitions for the mclust ``me()`` reference runs (mclust_me.R).

For each data set (faithful, iris, wine; read from ``experiments/data/*.csv``) and each
K in 1..5, a hard partition of the raw (unscaled) data: K = 1 puts every point in
cluster 0; K >= 2 takes the labels of scikit-learn's ``KMeans(n_clusters=K,
n_init=10, random_state=1000 * (data index) + K)`` (data index: faithful 0, iris 1,
wine 2). The labels themselves are what matters (they are saved; nobody needs to
rerun k-means to reproduce a start): the starting responsibilities are the one-hot
matrix ``z0[i, k] = (labels[i] == k)``, N x K, which R builds as the same matrix.

Writes ``experiments/results/mclust_me_starts.json``:

    {"description": ..., "sklearn_version": ..., "numpy_version": ...,
     "starts": {"faithful": {"1": {"seed": null, "labels": [0, 0, ...]},
                             "2": {"seed": 2, "labels": [...]}, ...},
                "iris": {...}, "wine": {...}}}

Labels are 0-based integers in 0..K-1, in data-row order, every cluster non-empty.

It also writes degenerate starts meant to make some models fail (singular
covariances), under ``"edge_starts"``: ``{name: {"data", "K", "labels", "description"}}``:

* ``faithful_K3_singleton``: the faithful K = 2 labels with row 0 moved to a third
  cluster of its own (one point: zero variance for the V.. models);
* ``iris_K3_pair``: the iris K = 2 labels with rows 0 and 1 moved to a third cluster
  (two points in 4-D: a rank-1 covariance).

Rerun from the repository root:

    python experiments/reference/make_starts.py
"""

from __future__ import annotations

import json
import pathlib

import numpy as np
import sklearn
from sklearn.cluster import KMeans

ROOT = pathlib.Path(__file__).resolve().parents[1]
DATA = ["faithful", "iris", "wine"]
KS = range(1, 6)


def main() -> None:
    starts: dict = {}
    for di, name in enumerate(DATA):
        x = np.loadtxt(ROOT / "data" / f"{name}.csv", delimiter=",", skiprows=1, dtype=np.float64)
        starts[name] = {}
        for k in KS:
            if k == 1:
                seed, labels = None, np.zeros(len(x), int)
            else:
                seed = 1000 * di + k
                labels = KMeans(n_clusters=k, n_init=10, random_state=seed).fit(x).labels_
            counts = np.bincount(labels, minlength=k)
            assert counts.min() > 0
            starts[name][str(k)] = {"seed": seed, "labels": [int(v) for v in labels]}
            print(name, k, "cluster sizes", counts.tolist())
    edge = {}
    lab = np.array(starts["faithful"]["2"]["labels"])
    lab[0] = 2
    edge["faithful_K3_singleton"] = {
        "data": "faithful",
        "K": 3,
        "labels": [int(v) for v in lab],
        "description": "faithful K=2 k-means labels, row 0 moved to its own cluster 2",
    }
    lab = np.array(starts["iris"]["2"]["labels"])
    lab[[0, 1]] = 2
    edge["iris_K3_pair"] = {
        "data": "iris",
        "K": 3,
        "labels": [int(v) for v in lab],
        "description": "iris K=2 k-means labels, rows 0 and 1 moved to cluster 2",
    }
    out = {
        "description": (
            "Hard starting partitions for mclust::me(); z0[i, k] = (labels[i] == k), "
            "labels 0-based. K=1: all zeros. K>=2: sklearn KMeans(n_clusters=K, n_init=10, "
            "random_state=seed) on the raw data from experiments/data/<name>.csv."
        ),
        "sklearn_version": sklearn.__version__,
        "numpy_version": np.__version__,
        "starts": starts,
        "edge_starts": edge,
    }
    path = ROOT / "results" / "mclust_me_starts.json"
    path.write_text(json.dumps(out) + "\n")
    print("wrote", path)


if __name__ == "__main__":
    main()
