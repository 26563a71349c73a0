# mclust's own model selection (Mclust defaults) on Old Faithful, iris and wine.
#
# What it computes, for each data set X read from experiments/data/<name>.csv
# (faithful: the same values as datasets::faithful; iris/wine: scikit-learn's copies,
# NOTE sklearn's iris differs from R's datasets::iris in two entries):
#   bic <- mclustBIC(X)            # G = 1:9, all 14 models, hc start (hcUse = "SVD")
#   icl <- mclustICL(X)            # same fits, ICL criterion
#   fit <- Mclust(X)               # selection by BIC
# all with mclust's defaults (emControl(), no prior, mclust.options()).
#
# Output: experiments/results/mclust_bic_reference.json
# {
#   "meta": {R_version, mclust_version, hcUse, hcModelName, control, notes},
#   "results": {<data>: {
#       file, n, d,
#       G: [1..9], models: [14 names],
#       bic:        [9][14]  (row = G, column = model; null where mclust gave NA),
#       returnCodes:[9][14]  (attr(bic, "returnCodes"); 0 ok, negative = failed),
#       npar:       [9][14]  (nMclustParams(model, d, G)),
#       loglik:     [9][14]  (derived: (bic + npar log n) / 2),
#       icl:        [9][14]  (mclustICL, same orientation),
#       top3_bic:   {"EEE,3": value, ...} (summary(bic), best first),
#       top3_icl:   {...},
#       hc_partitions: {"1": [labels 1..G, 1-based as in R], ..., "9": [...]}
#                    = hclass(attr(bic, "initialization")$hcPairs, G), the start
#                    of every model with that G (me() from unmap(labels)),
#       best: {modelName, G, loglik, bic, icl, df (= npar),
#              parameters: {pro [G], mean [D][G], variance: {sigma [D][D][G], ...}}
#                          = fit$parameters, as Mclust returns them,
#              loglik_of_parameters: the log-likelihood of those parameters
#                          (estep on them),
#              me: {loglik, iterations, returnCode, parameters}: me() from the
#                  hc partition hc_partitions[G], i.e. the fit whose loglik Mclust
#                  reports (me's parameters and loglik are consistent),
#              extra_mstep: TRUE if Mclust replaced me's parameters by one more
#                          M-step on me's final z (see below),
#              classification: [N] 1-based (map of the final z),
#              uncertainty: [N]},
#       best_icl: {modelName, G}   (the best model by ICL)
#   }}
# }
#
# CAUTION (mclust 6.0.0, summaryMclustBIC): after me() converges, if
# sum((pro - colMeans(z))^2) > sqrt(.Machine$double.eps), Mclust replaces the
# parameters by one extra M-step on me's final z, but keeps me's loglik / bic. So
# fit$parameters are one M-step past fit$loglik; compare a library's converged EM
# against best$me (parameters and loglik consistent), or against best$parameters
# with best$loglik_of_parameters.
#
# Rerun from the repository root (a minute or two on 2 cores):
#   Rscript experiments/reference/mclust_bic.R

suppressPackageStartupMessages(library(mclust))
source("experiments/reference/json_util.R")

DATA <- c("faithful", "iris", "wine")

arrayify <- function(v) {
  if (is.null(v) || !is.numeric(v)) return(v)
  if (is.null(dim(v))) return(as.array(unname(v)))
  unname(v)
}

variance_out <- function(var) {
  out <- list()
  for (nm in names(var)) {
    if (is.numeric(var[[nm]]) && !(nm %in% c("d", "G"))) out[[nm]] <- arrayify(var[[nm]])
  }
  out$modelName <- var$modelName
  out
}

top3 <- function(x) {
  s <- summary(x)  # named numeric, names "MODEL,G"
  as.list(setNames(as.numeric(s), names(s)))
}

results <- list()
for (name in DATA) {
  path <- file.path("experiments/data", paste0(name, ".csv"))
  X <- as.matrix(read.csv(path, check.names = FALSE))
  storage.mode(X) <- "double"
  n <- nrow(X); d <- ncol(X)
  t0 <- proc.time()[["elapsed"]]
  bic <- mclustBIC(X, verbose = FALSE)
  icl <- mclustICL(X, verbose = FALSE)
  fit <- Mclust(X, x = bic, verbose = FALSE)
  fit_default <- Mclust(X, verbose = FALSE)   # the plain call; must agree with fit
  stopifnot(fit$modelName == fit_default$modelName, fit$G == fit_default$G,
            isTRUE(all.equal(fit$loglik, fit_default$loglik, tolerance = 0)))
  G <- attr(bic, "G"); models <- attr(bic, "modelNames")
  npar <- outer(G, models, Vectorize(function(g, m) nMclustParams(m, d, g)))
  bic_m <- matrix(as.numeric(bic), length(G), length(models))
  icl_m <- matrix(as.numeric(icl), length(G), length(models))
  stopifnot(identical(attr(icl, "G"), G), identical(attr(icl, "modelNames"), models))
  hcp <- attr(bic, "initialization")$hcPairs
  cls <- hclass(hcp, G)
  hc_parts <- list()
  for (g in G) hc_parts[[as.character(g)]] <- as.integer(cls[, as.character(g)])
  me_fit <- me(data = X, modelName = fit$modelName,
               z = unmap(hclass(hcp, fit$G)), control = emControl())
  stopifnot(isTRUE(all.equal(me_fit$loglik, fit$loglik, tolerance = 1e-12)))
  ll_params <- estep(data = X, modelName = fit$modelName, parameters = fit$parameters)$loglik
  extra <- !isTRUE(all.equal(me_fit$parameters$mean, fit$parameters$mean, tolerance = 0))
  icl_best <- strsplit(names(summary(icl))[1], ",")[[1]]
  results[[name]] <- list(
    file = path, n = n, d = d, G = as.integer(G), models = models,
    bic = bic_m,
    returnCodes = matrix(as.numeric(attr(bic, "returnCodes")), length(G), length(models)),
    npar = npar,
    loglik = (bic_m + npar * log(n)) / 2,
    icl = icl_m,
    top3_bic = top3(bic), top3_icl = top3(icl),
    hc_partitions = hc_parts,
    best = list(modelName = fit$modelName, G = fit$G, loglik = fit$loglik, bic = fit$bic,
                icl = fit$icl, df = fit$df,
                parameters = list(pro = arrayify(fit$parameters$pro),
                                  mean = unname(as.matrix(fit$parameters$mean)),
                                  variance = variance_out(fit$parameters$variance)),
                loglik_of_parameters = ll_params,
                me = list(loglik = me_fit$loglik, iterations = unname(attr(me_fit, "info")[1]),
                          returnCode = attr(me_fit, "returnCode"),
                          parameters = list(pro = arrayify(me_fit$parameters$pro),
                                            mean = unname(as.matrix(me_fit$parameters$mean)),
                                            variance = variance_out(me_fit$parameters$variance))),
                extra_mstep = extra,
                classification = as.integer(fit$classification),
                uncertainty = unname(fit$uncertainty)),
    best_icl = list(modelName = icl_best[1], G = as.integer(icl_best[2]))
  )
  cat(sprintf("%-8s best BIC %s G=%d loglik=%.10f (params: %.10f) bic=%.10f icl=%.10f | best ICL %s,%s (%.1fs)\n",
              name, fit$modelName, fit$G, fit$loglik, ll_params, fit$bic, fit$icl, icl_best[1],
              icl_best[2], proc.time()[["elapsed"]] - t0))
  print(summary(bic))
}

ctrl <- emControl()
meta <- list(
  R_version = R.version.string,
  mclust_version = as.character(packageVersion("mclust")),
  hcUse = mclust.options("hcUse"),
  hcModelName = mclust.options("hcModelName"),
  control = list(eps = ctrl$eps, tol = ctrl$tol, itmax = ctrl$itmax, equalPro = ctrl$equalPro),
  notes = paste(
    "Mclust(X) defaults: G=1:9, 14 models, hc start (hcModelName VVV on hcUse='SVD'",
    "transformed data), no prior. Matrices are [G][model] (rows G=1..9, columns in",
    "'models' order). bic = 2*loglik - npar*log(n) (larger is better); loglik is",
    "derived from bic. Labels (hc_partitions, classification) are 1-based as in R.",
    "mean is D x G, sigma D x D x G (json[i][j][k] == R's a[i,j,k]).")
)
write_json_file(list(meta = meta, results = results),
                "experiments/results/mclust_bic_reference.json")
