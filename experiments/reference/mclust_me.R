# mclust's 14 covariance models fitted by EM (mclust::me) from fixed, shared starts.
#
# What it computes: for each data set (faithful, iris, wine; read from
# experiments/data/<name>.csv, the exact doubles numpy reads), each K in 1..5 and each
# of mclust's 14 models (EII VII EEI VEI EVI VVI EEE VEE EVE VVE EEV VEV EVV VVV),
#   fit <- me(data = X, modelName = model, z = z0, control = emControl(), warn = TRUE)
# with no prior, where z0 is the N x K one-hot matrix of the labels in
# experiments/results/mclust_me_starts.json (made by make_starts.py):
# z0[i, k] = 1 if labels[i] == k - 1 (labels are 0-based there).
# me() starts with an M-step on z0, then alternates E- and M-steps until the relative
# change of the log-likelihood is <= tol[1] = 1e-5; iterative M-steps (VEI, VEE,
# VEV, EVE, VVE, EVV) stop their inner loop at tol[2] = sqrt(.Machine$double.eps).
#
# Output: experiments/results/mclust_me_reference.json
# {
#   "meta": {R_version, mclust_version, control: {eps, tol[2], itmax[2], equalPro},
#            models: [...], Ks: [1..5], datasets: {name: {file, n, d, columns}},
#            starts_file, notes},
#   "results": {<data>: {<K as string>: {<model>: record}}},
#   "edge_cases": {<name>: {data, K, description, results: {<model>: record}}}
# }
# edge_cases: the same me() call from the degenerate starts under "edge_starts" in
# mclust_me_starts.json (a one-point cluster in faithful, a two-point cluster in
# iris), so that failures (NA loglik, returnCode -1 / -2, warnings) are on record.
# record = {
#   model, K, n, d,
#   loglik          : log-likelihood at the returned parameters (null if NA),
#   iterations      : attr(fit, "info")[1] (outer EM iterations; counts the M-step
#                     on z0 as the first),
#   info            : attr(fit, "info") as a named object (iterations/error or
#                     niterout/errout), plus "inner" {niterin, errin} for models
#                     with an iterative M-step,
#   returnCode      : attr(fit, "returnCode") (from mclust's me<MODEL> source):
#                     0 converged; 1 iteration limit; 2 inner (M-step) iteration
#                     limit; -1 "singular covariance" / "sigma-squared falls below
#                     threshold"; -2 "z column sum fell below threshold" (equalPro);
#                     -3 "mixing proportion fell below threshold"; -9 LAPACK failure;
#                     9 "z is missing". When returnCode != 0, loglik/pro/mean are
#                     NA (null) and the rest of "parameters" is whatever me()
#                     left there: do not use it,
#   warning         : attr(fit, "WARNING") (null if none),
#   r_warnings      : warnings raised by R during the call (list of strings),
#   error           : error message if me() threw (then the other fields are null),
#   npar            : nMclustParams(model, d, K),
#   bic             : bic(model, loglik, n, d, K) = 2 loglik - npar log(n)
#                     (mclust's sign: larger is better; null if loglik is NA),
#   parameters      : {pro: [K], mean: [D][K] (mclust orientation, D x K),
#                      variance: {every numeric member of fit$parameters$variance,
#                      e.g. sigma: [D][D][K] (json[i][j][k] = sigma[i, j, k]),
#                      sigmasq, scale, shape, orientation, Sigma, cholSigma,
#                      cholsigma, as mclust defines them for that model;
#                      vectors are always arrays (scale is [1] for E.. models)}}
# }
#
# Rerun from the repository root (about a minute):
#   python experiments/reference/export_data.py      # only if the CSVs are missing
#   python experiments/reference/make_starts.py      # only if the starts are missing
#   Rscript experiments/reference/mclust_me.R

suppressPackageStartupMessages(library(mclust))
source("experiments/reference/json_util.R")

MODELS <- c("EII", "VII", "EEI", "VEI", "EVI", "VVI", "EEE", "VEE", "EVE", "VVE",
            "EEV", "VEV", "EVV", "VVV")
KS <- 1:5
DATA <- c("faithful", "iris", "wine")

starts_all <- jsonlite::fromJSON("experiments/results/mclust_me_starts.json",
                                 simplifyVector = TRUE)
starts <- starts_all$starts

arrayify <- function(v) {
  if (is.null(v) || !is.numeric(v)) return(v)
  if (is.null(dim(v))) return(as.array(unname(v)))
  unname(v)
}

fit_one <- function(X, model, z0) {
  n <- nrow(X); d <- ncol(X); K <- ncol(z0)
  warns <- character(0)
  fit <- tryCatch(
    withCallingHandlers(
      me(data = X, modelName = model, z = z0, control = emControl(), warn = TRUE),
      warning = function(w) {
        warns <<- c(warns, conditionMessage(w))
        invokeRestart("muffleWarning")
      }),
    error = function(e) e)
  rec <- list(model = model, K = K, n = n, d = d)
  if (inherits(fit, "error")) {
    return(c(rec, list(loglik = NULL, iterations = NULL, info = NULL, returnCode = NULL,
                       warning = NULL, r_warnings = as.list(warns),
                       error = conditionMessage(fit),
                       npar = nMclustParams(model, d, K), bic = NULL, parameters = NULL)))
  }
  info <- attr(fit, "info")
  info_l <- as.list(info)
  if (!is.null(attr(info, "inner"))) info_l$inner <- as.list(attr(info, "inner"))
  ll <- fit$loglik
  ll_ok <- !is.null(ll) && length(ll) == 1 && is.finite(ll)
  var <- fit$parameters$variance
  var_out <- list()
  for (nm in names(var)) {
    if (is.numeric(var[[nm]]) && !(nm %in% c("d", "G"))) var_out[[nm]] <- arrayify(var[[nm]])
  }
  var_out$modelName <- var$modelName
  c(rec, list(
    loglik = if (ll_ok) ll else NA_real_,
    iterations = unname(info[1]),
    info = info_l,
    returnCode = attr(fit, "returnCode"),
    warning = attr(fit, "WARNING"),
    r_warnings = as.list(warns),
    error = NULL,
    npar = nMclustParams(model, d, K),
    bic = if (ll_ok) bic(model, ll, n, d, K) else NA_real_,
    parameters = list(pro = arrayify(fit$parameters$pro),
                      mean = unname(as.matrix(fit$parameters$mean)),
                      variance = var_out)))
}

results <- list()
datasets <- list()
for (name in DATA) {
  path <- file.path("experiments/data", paste0(name, ".csv"))
  X <- as.matrix(read.csv(path, check.names = FALSE))
  storage.mode(X) <- "double"
  datasets[[name]] <- list(file = path, n = nrow(X), d = ncol(X), columns = colnames(X))
  results[[name]] <- list()
  for (K in KS) {
    labels <- starts[[name]][[as.character(K)]]$labels
    stopifnot(length(labels) == nrow(X), all(labels %in% 0:(K - 1)))
    z0 <- matrix(0, nrow(X), K)
    z0[cbind(seq_len(nrow(X)), labels + 1L)] <- 1
    results[[name]][[as.character(K)]] <- list()
    for (model in MODELS) {
      t0 <- proc.time()[["elapsed"]]
      rec <- fit_one(X, model, z0)
      results[[name]][[as.character(K)]][[model]] <- rec
      cat(sprintf("%-8s K=%d %s loglik=%s iter=%s rc=%s %s %.1fs\n", name, K, model,
                  format(rec$loglik, digits = 12), format(rec$iterations),
                  format(rec$returnCode), paste(c(rec$warning, rec$error), collapse = " "),
                  proc.time()[["elapsed"]] - t0))
    }
  }
}

edge <- list()
for (ename in names(starts_all$edge_starts)) {
  es <- starts_all$edge_starts[[ename]]
  X <- as.matrix(read.csv(file.path("experiments/data", paste0(es$data, ".csv")),
                          check.names = FALSE))
  storage.mode(X) <- "double"
  z0 <- matrix(0, nrow(X), es$K)
  z0[cbind(seq_len(nrow(X)), es$labels + 1L)] <- 1
  res <- list()
  for (model in MODELS) {
    rec <- fit_one(X, model, z0)
    res[[model]] <- rec
    cat(sprintf("edge %-22s %s loglik=%s iter=%s rc=%s %s %s\n", ename, model,
                format(rec$loglik, digits = 12), format(rec$iterations),
                format(rec$returnCode), paste(rec$warning, collapse = " "),
                paste(unlist(rec$r_warnings), collapse = " | ")))
  }
  edge[[ename]] <- list(data = es$data, K = es$K, description = es$description, results = res)
}

ctrl <- emControl()
meta <- list(
  R_version = R.version.string,
  mclust_version = as.character(packageVersion("mclust")),
  control = list(eps = ctrl$eps, tol = ctrl$tol, itmax = ctrl$itmax, equalPro = ctrl$equalPro),
  prior = NULL,
  models = MODELS, Ks = KS, datasets = datasets,
  starts_file = "experiments/results/mclust_me_starts.json",
  notes = paste(
    "me(data=X, modelName=model, z=z0, control=emControl(), warn=TRUE), no prior.",
    "mean is D x K (mclust orientation); sigma is D x D x K; json[i][j][k] == R's",
    "a[i,j,k] (0-based). loglik is the log-likelihood of the returned parameters",
    "(last E-step after the last M-step). bic = 2*loglik - npar*log(n).")
)
write_json_file(list(meta = meta, results = results, edge_cases = edge),
                "experiments/results/mclust_me_reference.json")
