# mclust's own model selection (Mclust defaults) on three data sets shipped with
# mclust that no other reference here uses: diabetes (Reaven & Miller 1979; 145 x 3),
# banknote (Flury & Riedwyl 1988; 200 x 6) and thyroid (Coomans et al. 1983, UCI;
# 215 x 5), their numeric columns (the class column dropped).
#
# Writes the data to experiments/data/mclust_<name>.csv and, for each,
#   bic <- mclustBIC(X)            # G = 1:9, all 14 models, hc start (hcUse = "SVD")
#   fit <- Mclust(X, x = bic)      # selection by BIC
# to experiments/results/mclust_bic_more_reference.json:
# {"meta": {R_version, mclust_version},
#  "results": {<name>: {n, d, G [9], models [14], bic [9][14] (null where mclust gave
#              NA), best: {modelName, G, bic, loglik}}}}
#
# Rerun from the repository root (seconds): Rscript experiments/reference/mclust_bic_more.R
# (apt-get install -y r-base-core r-cran-mclust gives R with mclust 6.0.0).

suppressPackageStartupMessages(library(mclust))
source("experiments/reference/json_util.R")

sets <- list(
  diabetes = function() { data(diabetes, package = "mclust"); diabetes[, -1] },
  banknote = function() { data(banknote, package = "mclust"); banknote[, -1] },
  thyroid  = function() { data(thyroid, package = "mclust"); thyroid[, -1] }
)
results <- list()
for (name in names(sets)) {
  X <- as.matrix(sets[[name]]())
  write.csv(X, file.path("experiments/data", paste0("mclust_", name, ".csv")), row.names = FALSE)
  bic <- mclustBIC(X, verbose = FALSE)
  fit <- Mclust(X, x = bic, verbose = FALSE)
  m <- unclass(bic)
  results[[name]] <- list(
    n = nrow(X), d = ncol(X), G = as.array(as.integer(rownames(m))),
    models = as.array(colnames(m)), bic = unname(m[, , drop = FALSE]),
    best = list(modelName = fit$modelName, G = fit$G, bic = fit$bic, loglik = fit$loglik)
  )
}
meta <- list(R_version = R.version.string, mclust_version = as.character(packageVersion("mclust")))
write_json_file(list(meta = meta, results = results),
                "experiments/results/mclust_bic_more_reference.json")
