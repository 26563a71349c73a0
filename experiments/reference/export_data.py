"""Export scikit-learn's bundled iris and wine data to CSV for the R reference runs.

Writes ``experiments/data/iris.csv`` (150 x 4) and ``experiments/data/wine.csv``
(178 x 13): a header row with scikit-learn's feature names (quoted), then one row per
observation, every value written with ``repr`` (shortest string that round-trips a
float64), so R's ``read.csv`` and numpy's ``loadtxt`` read byte-identical doubles
(checked by ``mclust_me.R``, which writes the data back with ``%.17g``, and by
``check_reference.py``). Data only, no class labels.

Also writes ``experiments/data/digits_binary.csv`` (1797 x 64, for the flexmix
Bernoulli-mixture references): scikit-learn's ``load_digits`` pixels (0..16)
binarised as ``pixel > 7``, written as integers 0/1 with the feature names as header.

Rerun from the repository root:

    python experiments/reference/export_data.py
"""

from __future__ import annotations

import pathlib

import numpy as np
import sklearn.datasets

DATA_DIR = pathlib.Path(__file__).resolve().parents[1] / "data"


def write_csv(path: pathlib.Path, names: list[str], x: np.ndarray) -> None:
    x = np.asarray(x, np.float64)
    lines = [",".join('"' + n + '"' for n in names)]
    lines += [",".join(repr(float(v)) for v in row) for row in x]
    path.write_text("\n".join(lines) + "\n")
    back = np.loadtxt(path, delimiter=",", skiprows=1, dtype=np.float64)
    assert np.array_equal(back, x), path
    print(f"wrote {path} {x.shape}")


def main() -> None:
    for name, loader in [
        ("iris", sklearn.datasets.load_iris),
        ("wine", sklearn.datasets.load_wine),
    ]:
        d = loader()
        write_csv(DATA_DIR / f"{name}.csv", list(d.feature_names), d.data)
    d = sklearn.datasets.load_digits()
    xb = (d.data > 7).astype(int)
    path = DATA_DIR / "digits_binary.csv"
    lines = [",".join('"' + n + '"' for n in d.feature_names)]
    lines += [",".join(str(v) for v in row) for row in xb]
    path.write_text("\n".join(lines) + "\n")
    assert np.array_equal(np.loadtxt(path, delimiter=",", skiprows=1), xb)
    print(f"wrote {path} {xb.shape}, {int((xb.std(0) == 0).sum())} constant columns")


if __name__ == "__main__":
    main()
