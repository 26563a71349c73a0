# flexmix's Poisson mixtures (FLXMCmvpois) on three count data sets of R's own
# `datasets` package that no other reference here uses: discoveries (100 yearly
# counts of great discoveries, 1860-1959), InsectSprays$count (72 counts) and
# warpbreaks$breaks (54 counts). For K = 1..4, the best log-likelihood of 20
# flexmix runs from its random starts (set.seed(1) before each K), with
#   control = list(minprior = 0, tolerance = 1e-10, iter.max = 5000)
# (minprior = 0: no component is removed).
#
# Writes the counts to experiments/data/r_<name>.csv and
# experiments/results/flexmix_poisson_more_reference.json:
# {"meta": {R_version, flexmix_version, runs, control},
#  "results": {<name>: {n, K: [1..4], loglik: [4]}}}
#
# Rerun from the repository root (about 10 s):
#   Rscript experiments/reference/flexmix_poisson_more.R
# (apt-get install -y r-base-core r-cran-flexmix).

suppressPackageStartupMessages(library(flexmix))
source("experiments/reference/json_util.R")

RUNS <- 20
CONTROL <- list(minprior = 0, tolerance = 1e-10, iter.max = 5000)
sets <- list(
  discoveries = as.numeric(datasets::discoveries),
  insectsprays = as.numeric(datasets::InsectSprays$count),
  warpbreaks = as.numeric(datasets::warpbreaks$breaks)
)
results <- list()
for (name in names(sets)) {
  y <- sets[[name]]
  write.csv(data.frame(count = y), file.path("experiments/data", paste0("r_", name, ".csv")),
            row.names = FALSE)
  best <- numeric(0)
  for (k in 1:4) {
    set.seed(1)
    lls <- sapply(seq_len(RUNS), function(r) {
      fit <- try(flexmix(cbind(y) ~ 1, k = k, model = FLXMCmvpois(), control = CONTROL),
                 silent = TRUE)
      if (inherits(fit, "try-error")) -Inf else as.numeric(logLik(fit))
    })
    best <- c(best, max(lls))
  }
  results[[name]] <- list(n = length(y), K = as.array(1:4), loglik = as.array(best))
}
meta <- list(R_version = R.version.string,
             flexmix_version = as.character(packageVersion("flexmix")),
             runs = RUNS, control = CONTROL)
write_json_file(list(meta = meta, results = results),
                "experiments/results/flexmix_poisson_more_reference.json")
