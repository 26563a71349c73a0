# Reference numbers of the R package SQUAREM (Varadhan 2021) for jaxem's
# acceleration tests: the Poisson-mixture example of Varadhan & Roland (2008),
# Hasselblad's (1969) death notices, exactly as the package's demo
# (demo/poissonmix.R) and vignette run it, EM (fpiter) and SQUAREM (squarem,
# default control) from the same random start, tol = 1e-8.
#
# Run from the repository root (needs r-cran-squarem; the tests never call R):
#   Rscript experiments/squarem_reference.R > experiments/results/squarem_hasselblad.json
suppressMessages(library(SQUAREM))

poissmix.dat <- data.frame(death = 0:9, freq = c(162, 267, 271, 185, 111, 61, 27, 8, 3, 1))
y <- poissmix.dat$freq
tol <- 1.e-08
# The vignette's setRNG(list(kind = "Wichmann-Hill", normal.kind = "Box-Muller", seed = 123)).
RNGkind("Wichmann-Hill", "Box-Muller")
set.seed(123)
p0 <- c(runif(1), runif(2, 0, 6))

poissmix.em <- function(p, y) {
  pnew <- rep(NA, 3)
  i <- 0:(length(y) - 1)
  zi <- p[1] * exp(-p[2]) * p[2]^i / (p[1] * exp(-p[2]) * p[2]^i + (1 - p[1]) * exp(-p[3]) * p[3]^i)
  pnew[1] <- sum(y * zi) / sum(y)
  pnew[2] <- sum(y * i * zi) / sum(y * zi)
  pnew[3] <- sum(y * i * (1 - zi)) / sum(y * (1 - zi))
  pnew
}
poissmix.loglik <- function(p, y) {
  i <- 0:(length(y) - 1)
  loglik <- y * log(p[1] * exp(-p[2]) * p[2]^i / exp(lgamma(i + 1)) +
    (1 - p[1]) * exp(-p[3]) * p[3]^i / exp(lgamma(i + 1)))
  -sum(loglik)
}

pf1 <- fpiter(p = p0, y = y, fixptfn = poissmix.em, objfn = poissmix.loglik, control = list(tol = tol))
# EM's trajectory: the log-likelihood of the parameters entering iteration k (k = 1:
# the start), at k = 1..10 and every 100th, from a run with intermed = TRUE.
traj <- fpiter(p = p0, y = y, fixptfn = poissmix.em, objfn = poissmix.loglik,
               control = list(tol = tol, intermed = TRUE))$p.intermed
ks <- sort(unique(c(1:10, seq(100, nrow(traj), by = 100), nrow(traj))))
em_ll <- sapply(ks, function(k) -poissmix.loglik(traj[k, 1:3], y))
pf2 <- squarem(p = p0, y = y, fixptfn = poissmix.em, objfn = poissmix.loglik,
               control = list(tol = tol, intermed = TRUE))

num <- function(v) paste0("[", paste(sprintf("%.17g", v), collapse = ", "), "]")
cat("{\n")
cat(sprintf('  "package": "SQUAREM %s",\n', as.character(packageVersion("SQUAREM"))))
cat(sprintf('  "R": "%s",\n', R.version.string))
cat('  "data": {"deaths": ', num(poissmix.dat$death), ', "freq": ', num(y), "},\n", sep = "")
cat('  "tol": ', sprintf("%.17g", tol), ",\n", sep = "")
cat('  "start": ', num(p0), ",\n", sep = "")
cat('  "parametrisation": "par = (p, mu1, mu2): weight of component 1 and the two Poisson means; objective = negative summed log-likelihood",\n')
cat('  "em": {"fpevals": ', pf1$fpevals, ', "objfevals": ', pf1$objfevals,
    ', "convergence": ', tolower(pf1$convergence), ', "par": ', num(pf1$par),
    ', "loglik": ', sprintf("%.17g", -pf1$value.objfn),
    ', "trajectory_iterations": ', num(ks), ', "trajectory_loglik": ', num(em_ll), "},\n", sep = "")
cat('  "squarem": {"fpevals": ', pf2$fpevals, ', "objfevals": ', pf2$objfevals,
    ', "iter": ', pf2$iter, ', "convergence": ', tolower(pf2$convergence),
    ', "par": ', num(pf2$par), ', "loglik": ', sprintf("%.17g", -pf2$value.objfn),
    ', "loglik_per_cycle": ', num(-pf2$p.intermed[, 4]), "}\n", sep = "")
cat("}\n")
