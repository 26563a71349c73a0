# SQUAREM reference: Hasselblad (1969) two-component Poisson mixture (death notices).
#
# The example of ?squarem (SQUAREM package): data poissmix.dat = deaths 0..9 per day
# with frequencies y = (162, 267, 271, 185, 111, 61, 27, 8, 3, 1) (1096 days);
# parameters p = (pi, lambda1, lambda2); the fixed-point map poissmix.em is one EM
# step; the objective poissmix.loglik is the NEGATIVE log-likelihood
#   -sum_i y_i log(pi Pois(i; lambda1) + (1 - pi) Pois(i; lambda2))
# (full Poisson pmf incl. 1/i!, no multinomial constant). Functions copied verbatim
# from the help page.
#
# Starts (p0 is recorded in full precision, so nobody needs R's RNG):
#   "help_example": RNGkind("Mersenne-Twister", "Inversion"); set.seed(54321)
#                   (= setRNG(list(kind="Mersenne-Twister", normal.kind="Inversion",
#                   seed=54321)) in ?squarem); p0 <- c(runif(1), runif(2, 0, 4))
#   "vignette":     RNGkind("Wichmann-Hill", "Box-Muller"); set.seed(123)
#                   (= the vignette's setRNG call); p0 <- c(runif(1), runif(2, 0, 6))
#   "fixed":        p0 = c(0.3, 1.0, 2.5)
# Runs per start, all with tol = 1e-8 as in the example:
#   em      : fpiter(p0, y=y, fixptfn=poissmix.em, objfn=poissmix.loglik,
#             control=list(tol=1e-8))  (stops when ||p_new - p||_2 < tol)
#   sqs3    : squarem(..., objfn=poissmix.loglik, control=list(tol=1e-8))  (method 3)
#   sqs2    : squarem(..., control=list(method=2, tol=1e-8))
#   sqs1    : squarem(..., control=list(method=1, tol=1e-8))
#   sqs3_nonmonotone : squarem(p0, y, fixptfn, control=list(tol=1e-8, objfn.inc=Inf))
#   sqs3_noobj       : squarem(p0, y, fixptfn, control=list(tol=1e-8, kr=0.1))
#   rre_K2  : squarem(..., objfn=poissmix.loglik, control=list(K=2, tol=1e-8))
#   em_tight: fpiter with tol=1e-13, maxiter=1e6 (a tight value of the MLE)
# Each run records: par [3], value (negative log-likelihood; null when objfn was not
# given), loglik (= -poissmix.loglik(par), always computed), fpevals, objfevals,
# iter, convergence.
#
# Output: experiments/results/squarem_reference.json
#   {meta: {R_version, SQUAREM_version, data: {deaths [10], freq [10]}, tol, notes},
#    starts: {<start>: {p0 [3], runs: {<run>: {...}}}}}
#
# Rerun from the repository root (seconds):
#   Rscript experiments/reference/squarem.R

suppressPackageStartupMessages(library(SQUAREM))
source("experiments/reference/json_util.R")

poissmix.em <- function(p,y) {
  pnew <- rep(NA,3)
  i <- 0:(length(y)-1)
  zi <- p[1]*exp(-p[2])*p[2]^i / (p[1]*exp(-p[2])*p[2]^i + (1 - p[1])*exp(-p[3])*p[3]^i)
  pnew[1] <- sum(y*zi)/sum(y)
  pnew[2] <- sum(y*i*zi)/sum(y*zi)
  pnew[3] <- sum(y*i*(1-zi))/sum(y*(1-zi))
  p <- pnew
  return(pnew)
}
poissmix.loglik <- function(p,y) {
  i <- 0:(length(y)-1)
  loglik <- y*log(p[1]*exp(-p[2])*p[2]^i/exp(lgamma(i+1)) +
                  (1 - p[1])*exp(-p[3])*p[3]^i/exp(lgamma(i+1)))
  return ( -sum(loglik) )
}

poissmix.dat <- data.frame(death=0:9, freq=c(162,267,271,185,111,61,27,8,3,1))
y <- poissmix.dat$freq
tol <- 1.e-08

starts <- list()
RNGkind("Mersenne-Twister", "Inversion"); set.seed(54321)
starts$help_example <- c(runif(1), runif(2, 0, 4))
RNGkind("Wichmann-Hill", "Box-Muller"); set.seed(123)
starts$vignette <- c(runif(1), runif(2, 0, 6))
RNGkind("default", "default")
starts$fixed <- c(0.3, 1.0, 2.5)

rec <- function(f) {
  list(par = f$par, value = if (is.null(f$value)) NA_real_ else f$value,
       loglik = -poissmix.loglik(f$par, y),
       fpevals = f$fpevals, objfevals = f$objfevals, iter = f$iter,
       convergence = f$convergence)
}

out <- list()
for (s in names(starts)) {
  p0 <- starts[[s]]
  runs <- list(
    em = fpiter(p=p0, y=y, fixptfn=poissmix.em, objfn=poissmix.loglik, control=list(tol=tol)),
    sqs3 = squarem(par=p0, y=y, fixptfn=poissmix.em, objfn=poissmix.loglik, control=list(tol=tol)),
    sqs2 = squarem(par=p0, y=y, fixptfn=poissmix.em, objfn=poissmix.loglik,
                   control=list(method=2, tol=tol)),
    sqs1 = squarem(par=p0, y=y, fixptfn=poissmix.em, objfn=poissmix.loglik,
                   control=list(method=1, tol=tol)),
    sqs3_nonmonotone = squarem(par=p0, y=y, fixptfn=poissmix.em,
                               control=list(tol=tol, objfn.inc=Inf)),
    sqs3_noobj = squarem(par=p0, y=y, fixptfn=poissmix.em, control=list(tol=tol, kr=0.1)),
    rre_K2 = squarem(par=p0, y=y, fixptfn=poissmix.em, objfn=poissmix.loglik,
                     control=list(K=2, tol=tol)),
    em_tight = fpiter(p=p0, y=y, fixptfn=poissmix.em, objfn=poissmix.loglik,
                      control=list(tol=1e-13, maxiter=1e6)))
  out[[s]] <- list(p0 = p0, runs = lapply(runs, rec))
  cat(sprintf("start %s p0 = %s\n", s, paste(sprintf("%.17g", p0), collapse = ", ")))
  for (r in names(runs)) {
    x <- out[[s]]$runs[[r]]
    cat(sprintf("  %-17s par = (%.10f, %.10f, %.10f) loglik = %.10f fpevals = %d objfevals = %d conv = %s\n",
                r, x$par[1], x$par[2], x$par[3], x$loglik, as.integer(x$fpevals),
                as.integer(x$objfevals), x$convergence))
  }
}

meta <- list(
  R_version = R.version.string,
  SQUAREM_version = as.character(packageVersion("SQUAREM")),
  data = list(deaths = 0:9, freq = as.integer(y)),
  tol = tol,
  notes = paste(
    "par = (pi, lambda1, lambda2), pi = weight of the lambda1 component. value is",
    "poissmix.loglik = NEGATIVE log-likelihood (null when no objfn was given);",
    "loglik = -poissmix.loglik(par). fpevals = number of EM-map evaluations,",
    "objfevals = objective evaluations. The label order depends on the start.")
)
write_json_file(list(meta = meta, starts = out), "experiments/results/squarem_reference.json")
