# mclust's noise component (a uniform "Poisson noise" term) on Old Faithful + uniform noise.
#
# Data: the example in ?Mclust (mclust 6.0.0), reproduced exactly:
#   nNoise <- 100; set.seed(0)
#   Noise <- apply(faithful, 2, function(x) runif(nNoise, min = min(x)-.1, max = max(x)+.1))
#   data <- rbind(faithful, Noise)           # 372 x 2: rows 1..272 faithful, 273..372 noise
# written to experiments/data/faithful_noise.csv with %.17g (exact round trip) and read
# back from that file for every fit below. RNG: R's default (Mersenne-Twister,
# Inversion, Rejection sampling), recorded in meta.
#
# Fits (mclust defaults otherwise: emControl(), no prior, hc start, G = 0:9, 14 models):
#   "doc_example": ?Mclust's own noise initialisation,
#        set.seed(0); NoiseInit <- sample(c(TRUE,FALSE), size = 372, replace = TRUE,
#                                         prob = c(3,1)/4)   # TRUE = start as noise
#        Mclust(data, initialization = list(noise = NoiseInit))
#   "true_noise": noise initialisation = the 100 added points (rows 273..372),
#        Mclust(data, initialization = list(noise = c(rep(FALSE,272), rep(TRUE,100))))
# Vinv (reciprocal hypervolume of the noise term) is mclust's default
# hypvol(data, reciprocal = TRUE) = 1 / min(volume of the bounding box of the data,
# volume of the bounding box of its principal-component scores).
#
# EM-only references ("me_fixed_start"): me(data, modelName, z = z0, Vinv = Vinv) for all
# 14 models and G = 1, 2, 3, where z0 is the one-hot matrix (N x (G+1), last column =
# noise) of start labels stored in the JSON: rows 1..272 take the faithful k-means
# labels of experiments/results/mclust_me_starts.json for that G (0-based), rows
# 273..372 take label G (the noise column). G = 1: all faithful rows in component 0.
#
# Output: experiments/results/mclust_noise_reference.json
# {
#   meta: {R_version, mclust_version, RNGkind, hcUse, control, data_file, n, d,
#          n_faithful = 272, n_noise = 100, Vinv, hypvol, notes},
#   fits: {doc_example | true_noise: {
#            noise_init: [372 booleans] (TRUE = initialised as noise),
#            G: [0..9], models: [14], bic: [10][14] (row G = 0..9; for G = 0 all
#            models have the same value n log Vinv-based BIC), returnCodes [10][14],
#            modelName, G_best, loglik, bic, df, hypvol (= 1 / Vinv), Vinv,
#            loglik_of_parameters (estep on the returned parameters),
#            parameters: {pro: [G+1] (last = noise proportion), mean: [D][G],
#                         variance: {sigma: [D][D][G], ...}},
#            classification: [372] (0 = noise, 1..G components; R's convention),
#            uncertainty: [372],
#            npar: [10][14] (nMclustParams(model, d, G, noise = TRUE); G = 0: 1),
#            hc_partitions: {"1": [m labels 1..G, 1-based], ..., "9": [...]}
#                = hclass(attr(fit$BIC, "initialization")$hcPairs, G): the start of
#                every model with that G on the m = sum(!noise_init) rows not
#                initialised as noise, in their order (me() from unmap(labels),
#                the noise rows in column G + 1),
#            icl: [10][14] (mclustICL with the same initialisation, same
#                orientation as bic), icl_best: {modelName, G} }},
#   me_fixed_start: {<G>: {start_labels: [372] (0..G-1 Gaussian, G = noise),
#                          <model>: {loglik, iterations, info, returnCode, warning,
#                                    npar, bic, parameters {pro [G+1], mean [D][G],
#                                    variance{...}, Vinv}}}}
# }
# npar/bic for noise models: nMclustParams(model, d, G, noise = TRUE) and
# bic(model, loglik, n, d, G, noise = TRUE) (one extra mixing proportion).
#
# Rerun from the repository root (well under a minute):
#   Rscript experiments/reference/mclust_noise.R
# (npar, hc_partitions, icl and icl_best were added after the first run; rerunning
# reproduced every earlier value bit for bit.)

suppressPackageStartupMessages(library(mclust))
source("experiments/reference/json_util.R")

MODELS <- c("EII", "VII", "EEI", "VEI", "EVI", "VVI", "EEE", "VEE", "EVE", "VVE",
            "EEV", "VEV", "EVV", "VVV")
RNGkind("Mersenne-Twister", "Inversion", "Rejection")

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

# --- data, exactly as in ?Mclust -------------------------------------------------
faithful_csv <- read.csv("experiments/data/faithful.csv")
stopifnot(isTRUE(all.equal(faithful_csv, datasets::faithful, tolerance = 0,
                           check.attributes = FALSE)))
nNoise <- 100
set.seed(0)
Noise <- apply(faithful, 2, function(x) runif(nNoise, min = min(x) - .1, max = max(x) + .1))
data0 <- rbind(faithful, Noise)
set.seed(0)
NoiseInit <- sample(c(TRUE, FALSE), size = nrow(faithful) + nNoise, replace = TRUE,
                    prob = c(3, 1) / 4)

data_file <- "experiments/data/faithful_noise.csv"
M <- as.matrix(data0)
lines <- c('"eruptions","waiting"',
           apply(matrix(sprintf("%.17g", M), nrow(M)), 1, paste, collapse = ","))
writeLines(lines, data_file)
X <- as.matrix(read.csv(data_file))
storage.mode(X) <- "double"
stopifnot(identical(unname(X), unname(M) + 0))
n <- nrow(X); d <- ncol(X)
Vinv <- hypvol(X, reciprocal = TRUE)
cat("wrote", data_file, "; Vinv =", sprintf("%.17g", Vinv), "\n")

fit_record <- function(noise_init) {
  fit <- Mclust(X, initialization = list(noise = noise_init), verbose = FALSE)
  bic <- fit$BIC
  ll_params <- estep(data = X, modelName = fit$modelName, parameters = fit$parameters)$loglik
  cat(sprintf("  Mclust: %s G=%d loglik=%.10f (params %.10f) bic=%.10f noise pro=%.6f\n",
              fit$modelName, fit$G, fit$loglik, ll_params, fit$bic,
              tail(fit$parameters$pro, 1)))
  print(summary(fit$BIC))
  init <- attr(fit$BIC, "initialization")
  stopifnot(all(as.vector(init$noise) == which(noise_init)) || all(as.vector(init$noise) == noise_init))
  cls <- hclass(init$hcPairs, 1:9)
  hc_partitions <- setNames(lapply(1:9, function(G) as.integer(cls[, G])), as.character(1:9))
  icl <- mclustICL(X, initialization = list(noise = noise_init), verbose = FALSE)
  print(summary(icl))
  list(noise_init = as.logical(noise_init),
       G = as.integer(attr(bic, "G")), models = attr(bic, "modelNames"),
       bic = matrix(as.numeric(bic), nrow(bic), ncol(bic)),
       returnCodes = matrix(as.numeric(attr(bic, "returnCodes")), nrow(bic), ncol(bic)),
       top3_bic = as.list(setNames(as.numeric(summary(bic)), names(summary(bic)))),
       modelName = fit$modelName, G_best = fit$G, loglik = fit$loglik, bic_best = fit$bic,
       df = fit$df, hypvol = fit$hypvol, Vinv = fit$parameters$Vinv,
       loglik_of_parameters = ll_params,
       parameters = list(pro = arrayify(fit$parameters$pro),
                         mean = unname(as.matrix(fit$parameters$mean)),
                         variance = variance_out(fit$parameters$variance)),
       classification = as.integer(fit$classification),
       uncertainty = unname(fit$uncertainty),
       npar = outer(as.integer(attr(bic, "G")), attr(bic, "modelNames"), Vectorize(
         function(G, model) if (G == 0) 1 else nMclustParams(model, d, G, noise = TRUE))),
       hc_partitions = hc_partitions, icl = matrix(as.numeric(icl), nrow(icl), ncol(icl)),
       icl_best = list(modelName = strsplit(names(summary(icl))[1], ",")[[1]][1],
                       G = as.integer(strsplit(names(summary(icl))[1], ",")[[1]][2])))
}

fits <- list()
cat("doc_example (?Mclust NoiseInit):\n")
fits$doc_example <- fit_record(NoiseInit)
cat("true_noise (the 100 added points):\n")
fits$true_noise <- fit_record(c(rep(FALSE, nrow(faithful)), rep(TRUE, nNoise)))

# --- EM only, fixed starts ----------------------------------------------------------
starts <- jsonlite::fromJSON("experiments/results/mclust_me_starts.json")$starts$faithful
me_fixed <- list()
for (G in 1:3) {
  lab <- c(starts[[as.character(G)]]$labels, rep(G, nNoise))
  z0 <- matrix(0, n, G + 1)
  z0[cbind(seq_len(n), lab + 1L)] <- 1
  rec_g <- list(start_labels = as.integer(lab))
  for (model in MODELS) {
    warns <- character(0)
    fit <- withCallingHandlers(
      me(data = X, modelName = model, z = z0, Vinv = Vinv, control = emControl(), warn = TRUE),
      warning = function(w) { warns <<- c(warns, conditionMessage(w)); invokeRestart("muffleWarning") })
    info <- attr(fit, "info")
    info_l <- as.list(info)
    if (!is.null(attr(info, "inner"))) info_l$inner <- as.list(attr(info, "inner"))
    ll <- fit$loglik
    ok <- length(ll) == 1 && is.finite(ll)
    rec_g[[model]] <- list(
      loglik = if (ok) ll else NA_real_, iterations = unname(info[1]), info = info_l,
      returnCode = attr(fit, "returnCode"), warning = attr(fit, "WARNING"),
      r_warnings = as.list(warns),
      npar = nMclustParams(model, d, G, noise = TRUE),
      bic = if (ok) bic(model, ll, n, d, G, noise = TRUE) else NA_real_,
      parameters = list(pro = arrayify(fit$parameters$pro),
                        mean = unname(as.matrix(fit$parameters$mean)),
                        variance = variance_out(fit$parameters$variance),
                        Vinv = fit$parameters$Vinv))
    cat(sprintf("  me %s G=%d loglik=%.10f iter=%s rc=%s noise pro=%.6f\n", model, G, ll,
                format(unname(info[1])), format(attr(fit, "returnCode")),
                tail(fit$parameters$pro, 1)))
  }
  me_fixed[[as.character(G)]] <- rec_g
}

ctrl <- emControl()
meta <- list(
  R_version = R.version.string,
  mclust_version = as.character(packageVersion("mclust")),
  RNGkind = RNGkind(),
  hcUse = mclust.options("hcUse"),
  control = list(eps = ctrl$eps, tol = ctrl$tol, itmax = ctrl$itmax, equalPro = ctrl$equalPro),
  data_file = data_file, n = n, d = d, n_faithful = nrow(faithful), n_noise = nNoise,
  Vinv = Vinv, hypvol = 1 / Vinv,
  notes = paste(
    "Noise density is the constant Vinv on the whole space (mixture density",
    "sum_k pro_k N(x; mean_k, sigma_k) + pro_{G+1} Vinv). pro has G+1 entries, the last is",
    "the noise proportion. classification: 0 = noise (R's convention), 1..G components.",
    "start_labels are 0-based, G = noise. mean is D x G, sigma D x D x G.")
)
write_json_file(list(meta = meta, fits = fits, me_fixed_start = me_fixed),
                "experiments/results/mclust_noise_reference.json")
