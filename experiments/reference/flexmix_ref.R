# flexmix references: multivariate Poisson (FLXMCmvpois) and Bernoulli (FLXMCmvbinary)
# mixtures on real count / binary data.
#
# Data (exported by this script from R packages, or by export_data.py from
# scikit-learn, to experiments/data/*.csv; every fit reads the CSV back):
#   Poisson:
#     candy       : flexmix::candy, Packages (0..20) with frequency weights Freq
#                   (21 rows, 456 respondents; Boehning et al. 1998), D = 1
#     dmft        : flexmix::dmft, columns End, Begin (decayed/missing/filled teeth
#                   counts), 797 rows, D = 2
#     biochemists : flexmix::bioChemists, columns art, ment (article counts of the
#                   student and of the mentor), 915 rows, D = 2
#   Bernoulli:
#     whiskey     : flexmix::whiskey, 21 brand-incidence columns with frequency
#                   weights Freq (484 distinct patterns, 2218 households; the
#                   all-zero pattern is absent), fitted as a plain (non-truncated)
#                   Bernoulli mixture
#     digits_binary: scikit-learn load_digits, pixel > 7 (1797 x 64, 0/1)
# Weighted data sets: the first CSV column "Freq" is the frequency weight (flexmix
# `weights = ~Freq`, i.e. the row counts Freq times); the log-likelihood is
# sum_i Freq_i log f(x_i).
#
# For each data set and K = 1..5, with control
#   REF_CONTROL = list(minprior = 0, tolerance = 1e-10, iter.max = 5000)
# (minprior = 0: no component is ever removed; flexmix stops when
# |ll - ll_old| / (|ll| + 0.1) < tolerance):
#   fixed_start: flexmix(Y ~ 1, k = K, cluster = labels, model = ..., control =
#                REF_CONTROL) from a hard partition `labels` stored in the JSON
#                (0-based there): R's kmeans(Y, K, nstart = 10) after set.seed(K)
#                (unweighted; K = 1: all 0). flexmix starts with an M-step on it.
#   restarts:    20 runs flexmix(Y ~ 1, k = K, ...) from flexmix's random initial
#                partitions, set.seed(seed) before each (seeds recorded); all final
#                log-likelihoods and the best run's parameters.
#   stepFlexmix_defaults: stepFlexmix(Y ~ 1, k = 1:5, nrep = 20, model = ...) with
#                flexmix's default control (minprior = 0.05, tolerance = 1e-6,
#                iter.max = 200; components below 5% prior are removed, so the
#                returned k can be < K), set.seed(1) once before the call.
#
# Each fit record: {k (components left), logLik (flexmix's value: computed at the
# last E-step, i.e. with the prior of the previous iteration), loglik_at_returned
# (recomputed here from the returned prior and parameters), iter, converged,
# prior [k], parameters [D][k] (lambda for Poisson, center = P(x = 1) for Bernoulli;
# column j = component j, flexmix's orientation, same as mclust's mean)}.
# Components are in flexmix's order: compare up to a permutation.
#
# Output: experiments/results/flexmix_reference.json
#   {meta: {R_version, flexmix_version, ref_control, notes},
#    datasets: {<name>: {file, model, n, d, columns, weights (column name or null),
#               sum_weights, fits: {<K>: {fixed_start: {labels, ...record},
#                                         restarts: {seeds [20], logLiks [20],
#                                                    errors [20], best_rep (1-based),
#                                                    best: record},
#                                         stepFlexmix_defaults: record}}}}}
#
# Rerun from the repository root (a few minutes; digits dominates):
#   python experiments/reference/export_data.py   # digits_binary.csv
#   Rscript experiments/reference/flexmix_ref.R

suppressPackageStartupMessages(library(flexmix))
source("experiments/reference/json_util.R")

REF_CONTROL <- list(minprior = 0, tolerance = 1e-10, iter.max = 5000)
KS <- 1:5
NREP <- 20

# ---- export R-package data ------------------------------------------------------
write_int_csv <- function(df, path) {
  lines <- c(paste0('"', names(df), '"', collapse = ","),
             apply(as.matrix(df), 1, function(r) paste(sprintf("%d", as.integer(r)), collapse = ",")))
  writeLines(lines, path)
}
data(candy, dmft, bioChemists, whiskey, package = "flexmix")
write_int_csv(data.frame(Freq = candy$Freq, Packages = candy$Packages), "experiments/data/candy.csv")
write_int_csv(dmft[, c("End", "Begin")], "experiments/data/dmft.csv")
write_int_csv(bioChemists[, c("art", "ment")], "experiments/data/biochemists.csv")
stopifnot(all(whiskey$Incidence %in% c(0, 1)))
wdf <- data.frame(Freq = whiskey$Freq, whiskey$Incidence, check.names = FALSE)
write_int_csv(wdf, "experiments/data/whiskey.csv")

SETS <- list(
  candy = list(model = "FLXMCmvpois", weights = "Freq"),
  dmft = list(model = "FLXMCmvpois", weights = NULL),
  biochemists = list(model = "FLXMCmvpois", weights = NULL),
  whiskey = list(model = "FLXMCmvbinary", weights = "Freq"),
  digits_binary = list(model = "FLXMCmvbinary", weights = NULL)
)

make_model <- function(name) if (name == "FLXMCmvpois") FLXMCmvpois() else FLXMCmvbinary()

loglik_at <- function(Y, w, model, prior, par) {
  # log f(y_i) = log sum_k prior_k prod_d p(y_id | par[d, k])
  comp <- sapply(seq_along(prior), function(k) {
    if (model == "FLXMCmvpois") {
      rowSums(dpois(Y, matrix(par[, k], nrow(Y), ncol(Y), byrow = TRUE), log = TRUE))
    } else {
      p <- matrix(par[, k], nrow(Y), ncol(Y), byrow = TRUE)
      rowSums(log(Y * p + (1 - Y) * (1 - p)))
    }
  })
  comp <- matrix(comp, nrow(Y)) + matrix(log(prior), nrow(Y), length(prior), byrow = TRUE)
  m <- apply(comp, 1, max)
  sum(w * (m + log(rowSums(exp(comp - m)))))
}

record <- function(f, Y, w, model) {
  par <- sapply(f@components, function(cc) cc[[1]]@parameters[[1]])
  par <- matrix(par, nrow = ncol(Y))
  list(k = f@k, logLik = f@logLik,
       loglik_at_returned = loglik_at(Y, w, model, f@prior, par),
       iter = f@iter, converged = f@converged,
       prior = as.array(unname(f@prior)), parameters = unname(par))
}

out <- list()
for (name in names(SETS)) {
  s <- SETS[[name]]
  path <- file.path("experiments/data", paste0(name, ".csv"))
  raw <- read.csv(path, check.names = FALSE)
  wcol <- s$weights
  Y <- as.matrix(raw[, setdiff(names(raw), wcol), drop = FALSE])
  storage.mode(Y) <- "integer"
  w <- if (is.null(wcol)) rep(1, nrow(Y)) else raw[[wcol]]
  dat <- data.frame(Freq = w)
  dat$Y <- Y
  wf <- if (is.null(wcol)) NULL else ~Freq
  fits <- list()
  t_set <- proc.time()[["elapsed"]]
  for (K in KS) {
    # fixed start
    if (K == 1) lab <- rep(1L, nrow(Y)) else { set.seed(K); lab <- kmeans(Y, K, nstart = 10)$cluster }
    f <- flexmix(Y ~ 1, data = dat, k = K, cluster = lab, model = make_model(s$model),
                 weights = wf, control = REF_CONTROL)
    fixed <- c(list(labels = as.integer(lab - 1L)), record(f, Y, w, s$model))
    # random restarts
    seeds <- 100000L * match(name, names(SETS)) + 100L * K + seq_len(NREP)
    lls <- rep(NA_real_, NREP); errs <- rep(NA_character_, NREP); best <- NULL; best_rep <- NA
    for (r in seq_len(NREP)) {
      set.seed(seeds[r])
      fr <- tryCatch(flexmix(Y ~ 1, data = dat, k = K, model = make_model(s$model),
                             weights = wf, control = REF_CONTROL), error = function(e) e)
      if (inherits(fr, "error")) { errs[r] <- conditionMessage(fr); next }
      lls[r] <- fr@logLik
      if (is.null(best) || fr@logLik > best@logLik) { best <- fr; best_rep <- r }
    }
    fits[[as.character(K)]] <- list(
      fixed_start = fixed,
      restarts = list(seeds = seeds, logLiks = lls, errors = as.list(errs),
                      best_rep = best_rep, best = record(best, Y, w, s$model)))
    cat(sprintf("%-13s K=%d fixed ll=%.8f (iter %d, k %d) | restarts best %.8f worst %.8f (%d errors)\n",
                name, K, fixed$logLik, as.integer(fixed$iter), fixed$k, max(lls, na.rm = TRUE),
                min(lls, na.rm = TRUE), sum(!is.na(errs))))
  }
  set.seed(1)
  st <- stepFlexmix(Y ~ 1, data = dat, k = KS, nrep = NREP, model = make_model(s$model),
                    weights = wf, verbose = FALSE)
  for (K in KS) {
    fK <- getModel(st, as.character(K))
    fits[[as.character(K)]]$stepFlexmix_defaults <- record(fK, Y, w, s$model)
    cat(sprintf("%-13s K=%d stepFlexmix defaults ll=%.8f k=%d\n", name, K, fK@logLik, fK@k))
  }
  out[[name]] <- list(file = path, model = s$model, n = nrow(Y), d = ncol(Y),
                      columns = colnames(Y), weights = wcol, sum_weights = sum(w), fits = fits)
  cat(sprintf("%s done in %.0fs\n", name, proc.time()[["elapsed"]] - t_set))
}

meta <- list(
  R_version = R.version.string,
  flexmix_version = as.character(packageVersion("flexmix")),
  ref_control = REF_CONTROL,
  notes = paste(
    "parameters are [D][k] (column j = component j). labels are 0-based.",
    "logLik is flexmix's (weighted) log-likelihood at its last E-step; the returned",
    "prior is the one re-estimated after that E-step, so loglik_at_returned (the",
    "log-likelihood of the returned prior and parameters) can differ slightly.",
    "Poisson log-likelihood includes -log(y!). Random restarts depend on R's RNG",
    "and flexmix's initialisation; compare best logLik per K, not the path.")
)
write_json_file(list(meta = meta, datasets = out), "experiments/results/flexmix_reference.json")
