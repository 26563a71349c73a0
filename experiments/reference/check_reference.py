"""Consistency checks of the R reference files, in numpy/scipy (no R needed).

* mclust_me_reference.json: for every fit that returned parameters, the
  log-likelihood recomputed from (pro, mean, sigma) on the CSV data equals the
  recorded ``loglik``; sigma has shape (D, D, K) and is symmetric; for models with
  scale/shape/orientation, sigma_k == scale_k * O_k diag(shape_k) O_k^T; npar and bic
  agree with ``bic = 2 loglik - npar log n``.
* further files are checked when present (see the functions below).

Run from the repository root:

    python experiments/reference/check_reference.py
"""

from __future__ import annotations

import json
import pathlib

import numpy as np
from scipy.special import logsumexp
from scipy.stats import multivariate_normal

ROOT = pathlib.Path(__file__).resolve().parents[1]
RESULTS = ROOT / "results"


def load_csv(name: str) -> np.ndarray:
    return np.loadtxt(ROOT / "data" / f"{name}.csv", delimiter=",", skiprows=1, dtype=np.float64)


def gmm_loglik(x, pro, mean_dk, sigma_ddk, vinv=None):
    """Mixture log-likelihood; mean is D x K, sigma D x D x K (mclust layout)."""
    k = mean_dk.shape[1]
    logs = np.stack(
        [
            np.log(pro[j]) + multivariate_normal(mean_dk[:, j], sigma_ddk[:, :, j]).logpdf(x)
            for j in range(k)
        ],
        axis=1,
    )
    if vinv is not None:  # noise component: last entry of pro, density vinv
        logs = np.concatenate([logs, np.full((len(x), 1), np.log(pro[-1]) + np.log(vinv))], 1)
    return float(logsumexp(logs, axis=1).sum())


def _check_me_record(x, k, rec, where) -> float:
    """Re-evaluate one me() record; returns the relative loglik difference."""
    n, d = x.shape
    assert rec["npar"] is not None
    if rec["loglik"] is None:
        assert rec["returnCode"] != 0 and rec["bic"] is None, where
        print(f"NA: {where} returnCode={rec['returnCode']} {rec['warning']}")
        return 0.0
    assert rec["returnCode"] == 0, where
    p = rec["parameters"]
    pro = np.asarray(p["pro"])
    mean = np.asarray(p["mean"])
    sigma = np.asarray(p["variance"]["sigma"])
    assert pro.shape == (k,) and mean.shape == (d, k) and sigma.shape == (d, d, k)
    assert np.allclose(sigma, sigma.transpose(1, 0, 2), rtol=1e-12, atol=0)
    ll = gmm_loglik(x, pro, mean, sigma)
    rel = abs(ll - rec["loglik"]) / abs(rec["loglik"])
    assert rel < 1e-10, (where, ll, rec["loglik"])
    bic = 2 * rec["loglik"] - rec["npar"] * np.log(n)
    assert abs(bic - rec["bic"]) < 1e-8 * abs(bic)
    v = p["variance"]
    if "orientation" in v or "shape" in v:
        scale = np.broadcast_to(np.asarray(v["scale"]), (k,))
        shape = np.asarray(v["shape"])
        shape = np.broadcast_to(shape[:, None] if shape.ndim == 1 else shape, (d, k))
        o = np.asarray(v["orientation"]) if "orientation" in v else np.eye(d)
        o = np.broadcast_to(o[:, :, None] if o.ndim == 2 else o, (d, d, k))
        for j in range(k):
            s = scale[j] * o[:, :, j] @ np.diag(shape[:, j]) @ o[:, :, j].T
            assert np.allclose(s, sigma[:, :, j], rtol=1e-8, atol=1e-12 * abs(s).max())
    return rel


def check_me() -> None:
    path = RESULTS / "mclust_me_reference.json"
    ref = json.loads(path.read_text())
    worst = 0.0
    n_fits = 0
    for name, by_k in ref["results"].items():
        x = load_csv(name)
        for k_str, by_model in by_k.items():
            for model, rec in by_model.items():
                worst = max(
                    worst, _check_me_record(x, int(k_str), rec, f"{name} K={k_str} {model}")
                )
                n_fits += 1
    print(f"{path.name}: {n_fits} fits re-evaluated (max rel. loglik diff {worst:.1e})")
    for ename, e in ref.get("edge_cases", {}).items():
        x = load_csv(e["data"])
        for model, rec in e["results"].items():
            _check_me_record(x, e["K"], rec, f"edge {ename} {model}")
        n_na = sum(r["loglik"] is None for r in e["results"].values())
        print(f"{path.name}: edge case {ename}: {14 - n_na} fits re-evaluated, {n_na} failed")


def main() -> None:
    check_me()
    for fn in EXTRA:
        fn()


def check_bic() -> None:
    path = RESULTS / "mclust_bic_reference.json"
    if not path.exists():
        return
    ref = json.loads(path.read_text())
    for name, r in ref["results"].items():
        x = load_csv(name)
        n = len(x)
        bic = np.array(r["bic"], dtype=float)
        ll = np.array(r["loglik"], dtype=float)
        npar = np.array(r["npar"], dtype=float)
        assert bic.shape == (len(r["G"]), len(r["models"]))
        ok = ~np.isnan(bic)
        assert np.allclose(2 * ll[ok] - npar[ok] * np.log(n), bic[ok], rtol=1e-12)
        assert (np.array(r["returnCodes"])[~ok] != 0).all()
        b = r["best"]
        i, j = r["G"].index(b["G"]), r["models"].index(b["modelName"])
        assert bic[i, j] == np.nanmax(bic), name
        for p, target in [
            (b["parameters"], b["loglik_of_parameters"]),
            (b["me"]["parameters"], b["me"]["loglik"]),
        ]:
            ll_p = gmm_loglik(
                x, np.asarray(p["pro"]), np.asarray(p["mean"]), np.asarray(p["variance"]["sigma"])
            )
            assert abs(ll_p - target) < 1e-10 * abs(target), (name, ll_p, target)
        assert b["me"]["loglik"] == b["loglik"] or abs(
            b["me"]["loglik"] - b["loglik"]
        ) < 1e-12 * abs(b["loglik"])
        assert abs(ll[i, j] - b["loglik"]) < 1e-9 * abs(b["loglik"])
        for g, lab in r["hc_partitions"].items():
            assert len(lab) == n and sorted(set(lab)) == list(range(1, int(g) + 1))
        print(
            f"{path.name}: {name} best {b['modelName']},{b['G']} loglik {b['loglik']:.6f} "
            f"re-evaluated; extra M-step {b['extra_mstep']} (its params: "
            f"{b['loglik_of_parameters']:.6f}); {int((~ok).sum())} NA cells"
        )


def check_noise() -> None:
    path = RESULTS / "mclust_noise_reference.json"
    if not path.exists():
        return
    ref = json.loads(path.read_text())
    x = load_csv("faithful_noise")
    assert x.shape == (ref["meta"]["n"], ref["meta"]["d"])
    assert np.array_equal(x[:272], load_csv("faithful"))
    vinv = ref["meta"]["Vinv"]
    for name, f in ref["fits"].items():
        assert f["Vinv"] == vinv and abs(f["hypvol"] * vinv - 1) < 1e-14
        p = f["parameters"]
        ll = gmm_loglik(
            x, np.asarray(p["pro"]), np.asarray(p["mean"]), np.asarray(p["variance"]["sigma"]), vinv
        )
        assert abs(ll - f["loglik"]) < 1e-10 * abs(f["loglik"]), (name, ll, f["loglik"])
        bic = np.array(f["bic"], dtype=float)
        assert np.nanmax(bic) == f["bic_best"]
        print(
            f"{path.name}: {name} {f['modelName']},{f['G_best']} loglik {f['loglik']:.6f} "
            f"re-evaluated (noise pro {p['pro'][-1]:.4f})"
        )
    worst = 0.0
    for g, by_model in ref["me_fixed_start"].items():
        for model, rec in by_model.items():
            if model == "start_labels" or rec["loglik"] is None:
                continue
            p = rec["parameters"]
            assert p["Vinv"] == vinv and len(p["pro"]) == int(g) + 1
            ll = gmm_loglik(
                x,
                np.asarray(p["pro"]),
                np.asarray(p["mean"]),
                np.asarray(p["variance"]["sigma"]),
                vinv,
            )
            worst = max(worst, abs(ll - rec["loglik"]) / abs(rec["loglik"]))
    assert worst < 1e-10
    print(f"{path.name}: me_fixed_start re-evaluated (max rel. diff {worst:.1e})")


def check_squarem() -> None:
    path = RESULTS / "squarem_reference.json"
    if not path.exists():
        return
    from scipy.stats import poisson

    ref = json.loads(path.read_text())
    i = np.asarray(ref["meta"]["data"]["deaths"])
    y = np.asarray(ref["meta"]["data"]["freq"])
    for start, st in ref["starts"].items():
        for run, r in st["runs"].items():
            w, l1, l2 = r["par"]
            ll = float(np.sum(y * np.log(w * poisson.pmf(i, l1) + (1 - w) * poisson.pmf(i, l2))))
            assert abs(ll - r["loglik"]) < 1e-11 * abs(ll), (start, run, ll, r["loglik"])
            if r["value"] is not None:
                assert abs(r["value"] + r["loglik"]) < 1e-11 * abs(ll)
    print(f"{path.name}: all runs re-evaluated")


def check_flexmix() -> None:
    path = RESULTS / "flexmix_reference.json"
    if not path.exists():
        return
    from scipy.stats import poisson

    ref = json.loads(path.read_text())
    for name, s in ref["datasets"].items():
        raw = np.loadtxt(ROOT.parent / s["file"], delimiter=",", skiprows=1, ndmin=2)
        w, y = (raw[:, 0], raw[:, 1:]) if s["weights"] else (np.ones(len(raw)), raw)
        assert y.shape == (s["n"], s["d"]) and w.sum() == s["sum_weights"]
        for k_str, f in s["fits"].items():
            for r in [f["fixed_start"], f["restarts"]["best"], f["stepFlexmix_defaults"]]:
                par, pri = np.asarray(r["parameters"]), np.asarray(r["prior"])
                assert par.shape == (s["d"], r["k"]) and pri.shape == (r["k"],)
                with np.errstate(divide="ignore"):
                    if s["model"] == "FLXMCmvpois":
                        comp = np.stack(
                            [poisson.logpmf(y, par[:, j]).sum(1) for j in range(len(pri))], 1
                        )
                    else:
                        comp = np.stack(
                            [
                                np.log(np.where(y == 1, par[:, j], 1 - par[:, j])).sum(1)
                                for j in range(len(pri))
                            ],
                            1,
                        )
                    ll = float((w * logsumexp(comp + np.log(pri), axis=1)).sum())
                assert abs(ll - r["loglik_at_returned"]) < 1e-9 * abs(ll), (name, k_str, ll)
                assert abs(r["logLik"] - r["loglik_at_returned"]) < 1e-6 * abs(ll)
        print(f"{path.name}: {name} fits re-evaluated")


EXTRA: list = [check_bic, check_noise, check_squarem, check_flexmix]

if __name__ == "__main__":
    main()
