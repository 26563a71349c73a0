"""Smoke tests: every experiment script runs end to end on tiny arguments.

Each test calls the script's ``main(argv)`` with a problem small enough to run in
seconds (most of the time is compilation) and checks that it wrote its figure
and its markdown table to ``tmp_path``. The numbers are not checked: these are
tests that the scripts still work with the library, not of their findings.
``test_missing_data``, ``test_initialisation`` and ``test_discrete_mixtures`` run
their scripts' ``--quick`` mode in a subprocess instead.
``test_em_vs_gradient_overlap`` is marked slow (run it with ``-m slow``).
"""

import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("matplotlib")  # in the "experiments" extra

EXPERIMENTS = pathlib.Path(__file__).resolve().parents[1] / "experiments"
if str(EXPERIMENTS) not in sys.path:
    sys.path.insert(0, str(EXPERIMENTS))


def check_outputs(tmp_path: pathlib.Path, stem: str) -> str:
    png, md = tmp_path / f"{stem}.png", tmp_path / f"{stem}.md"
    assert png.is_file() and png.stat().st_size > 0
    assert md.is_file()
    text = md.read_text()
    assert text.startswith("# ")
    assert f"![figure]({png.name})" in text
    return text


def run_quick(script: str, tmp_path: pathlib.Path, timeout: int = 300) -> None:
    """Run ``experiments/<script> --quick --out tmp_path`` in a subprocess."""
    run = subprocess.run(
        [sys.executable, str(EXPERIMENTS / script), "--quick", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]


@pytest.mark.slow  # ten compiled programs (L-BFGS, SQUAREM, a Jacobian): 30-60 s tiny
def test_em_vs_gradient_overlap(tmp_path):
    import em_vs_gradient_overlap

    rows = em_vs_gradient_overlap.main(
        [
            "--seeds", "2", "--n", "40", "--separations", "3",
            "--max-iter-em", "30", "--max-iter-adam", "30", "--max-iter-lbfgs", "10",
            "--max-iter-squarem", "10", "--repeats", "1", "--out", str(tmp_path),
        ]
    )  # fmt: skip
    assert [r["delta"] for r in rows] == [3.0]
    assert rows[0]["ll_star"].shape == (2,)
    assert rows[0]["SQUAREM"]["iters"].shape == (2,)
    text = check_outputs(tmp_path, "em_vs_gradient_overlap")
    assert "SQUAREM passes" in text


@pytest.mark.slow  # ~12 s
def test_real_data_curves(tmp_path):
    import real_data_curves

    problems = real_data_curves.main(
        [
            "--starts", "2", "--datasets", "faithful",
            "--max-iter-em", "10", "--max-iter-adam", "10", "--max-iter-lbfgs", "5",
            "--out", str(tmp_path),
        ]
    )  # fmt: skip
    assert [p["name"] for p in problems] == ["faithful"]
    assert problems[0]["EM"]["final"].shape == (2,)
    check_outputs(tmp_path, "real_data_curves")


def test_sweep_reg_covar_k(tmp_path):
    import sweep_reg_covar_k

    results = sweep_reg_covar_k.main(
        [
            "--n-init", "1", "--max-k", "2", "--reg-covars", "1e-3,1e-1",
            "--covariance-types", "diag", "--max-iter", "10", "--out", str(tmp_path),
        ]
    )  # fmt: skip
    assert results["diag"]["bic"].shape == (2, 2)
    check_outputs(tmp_path, "sweep_reg_covar_k")


def test_local_optima(tmp_path):
    import local_optima

    rows = local_optima.main(
        [
            "--ks", "3", "--restarts", "4", "--n-per-component", "10",
            "--em-max-iter", "20", "--adam-max-iter", "20", "--out", str(tmp_path),
        ]
    )  # fmt: skip
    (row,) = rows
    assert row["k"] == 3 and row["n"] == 30
    assert row["seeded"].shape == (2, 4)  # two init methods x 4 restarts
    for method in ("EM", "Adam"):
        assert row[method]["final"].shape == (2, 4)
        assert np.all(np.isfinite(row[method]["final"]))
    text = check_outputs(tmp_path, "local_optima")
    assert "random_from_data" in text and "k-means++" in text


@pytest.mark.slow  # ~21 s
def test_missing_data(tmp_path):
    # In a subprocess: the script turns on jax_enable_x64, which must not leak into
    # the other tests of this process.
    pytest.importorskip("sklearn")  # iris comes from scikit-learn's bundled copy
    run_quick("missing_data.py", tmp_path)
    text = check_outputs(tmp_path, "missing_data_quick")
    assert "missing EM, full" in text and "mean imputation + EM" in text
    assert "| iris | 0.5 |" in text


@pytest.mark.slow  # ~55 s, compilation of 6 initialisers x 4 types
def test_initialisation(tmp_path):
    # In a subprocess, like test_missing_data: the script turns on jax_enable_x64.
    run_quick("initialisation.py", tmp_path)
    text = check_outputs(tmp_path, "initialisation_quick")
    assert "standardized_kmeans" in text and "| faithful | full (VVV) | 4 |" in text
    reference = json.loads((tmp_path / "initialisation_quick_reference.json").read_text())
    assert set(reference["faithful"]["full"]) == {"1", "2", "3", "4"}


@pytest.mark.slow  # ~45 s of CPU: three select programs (Bernoulli, categorical, Poisson)
def test_discrete_mixtures(tmp_path):
    # In a subprocess, like test_missing_data: the script turns on jax_enable_x64.
    run_quick("discrete_mixtures.py", tmp_path, timeout=600)
    text = check_outputs(tmp_path, "discrete_mixtures_quick")
    assert "| digits | 3 |" in text and "| anes96 | 1 |" in text and "| biochemists | 2 |" in text


@pytest.mark.slow  # five compiled programs (fits, gradient steps, grids): 5 min on busy cores
def test_bilevel(tmp_path):
    run_quick("bilevel.py", tmp_path, timeout=600)
    text = check_outputs(tmp_path, "bilevel")
    assert "reg_covar: gradient" in text and "random search" in text


@pytest.mark.slow  # six select programs (two Gaussian, four factor-analyser mixtures), 64-D
def test_factor_analyzers(tmp_path):
    # In a subprocess: the script turns on jax_enable_x64 and needs scikit-learn's digits.
    pytest.importorskip("sklearn")
    run_quick("factor_analyzers.py", tmp_path, timeout=900)
    text = check_outputs(tmp_path, "factor_analyzers_quick")
    assert "| MFA q=5 | diag noise |" in text and "| GMM full | full |" in text


def test_suite_compile_report(tmp_path):
    import suite_compile_report

    log = tmp_path / "log"
    log.mkdir()
    (log / "1.tsv").write_text(
        "jaxpr_trace_duration\t_fit\t0.5000\ttests/test_a.py::test_one\n"
        "jaxpr_to_mlir_module_duration\tjit(_fit)\t0.2500\ttests/test_a.py::test_one\n"
        "backend_compile_duration\tjit(_fit)\t2.0000\ttests/test_a.py::test_one\n"
        "backend_compile_duration\tjit(add)\t0.0100\ttests/test_b.py::test_two\n"
    )
    out = tmp_path / "report.md"
    suite_compile_report.main([str(log), "--out", str(out)])
    text = out.read_text()
    assert text.startswith("# ")
    assert "| compile | 2 | 2.0 |" in text
    assert "| `_fit` | 1 | 0.5 | 0.2 | 2.0 | 2.8 |" in text  # by program
    assert "| `tests/test_b.py` | 1 | 0.0 | 0.0 | 0.0 | 0.0 |" in text  # by file
