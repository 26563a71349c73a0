# Minimal JSON writer with full double precision, shared by the R reference scripts.
#
# jsonlite::toJSON() prints at most 15 significant digits, which does not round-trip
# a double; this writer prints every double with sprintf("%.17g") (exact round trip).
# Conventions (same nesting as jsonlite's matrix = "rowmajor"):
#   * NULL -> null; NA / NaN -> null; +-Inf -> Infinity / -Infinity (Python's json
#     module reads these).
#   * a named list -> object; an unnamed list -> array.
#   * an atomic vector without dim of length 1 -> scalar; otherwise -> array.
#     Wrap in as.array() to force an array for length-1 vectors.
#   * an array / matrix with dim (d1, ..., dn) -> nested arrays with
#     json[i1][i2]...[in] == A[i1, i2, ..., in] (so numpy.asarray(json) has shape
#     (d1, ..., dn) and the same indexing as R, 0-based).
# Usage: source("experiments/reference/json_util.R"); write_json_file(x, path)

json_num <- function(v) {
  if (is.logical(v)) return(ifelse(is.na(v), "null", ifelse(v, "true", "false")))
  if (is.integer(v)) return(ifelse(is.na(v), "null", sprintf("%d", v)))
  if (is.character(v) || is.factor(v)) {
    v <- as.character(v)
    return(vapply(v, function(s) if (is.na(s)) "null" else
      as.character(jsonlite::toJSON(jsonlite::unbox(s))), ""))
  }
  v <- as.double(v)
  out <- sprintf("%.17g", v)
  out[is.nan(v) | is.na(v)] <- "null"
  out[is.infinite(v) & v > 0] <- "Infinity"
  out[is.infinite(v) & v < 0] <- "-Infinity"
  out
}

json_nest <- function(a) {
  d <- dim(a)
  if (length(d) <= 1) return(paste0("[", paste(json_num(as.vector(a)), collapse = ","), "]"))
  parts <- vapply(seq_len(d[1]), function(i) {
    sub <- do.call(`[`, c(list(a, i), rep(list(TRUE), length(d) - 1), list(drop = FALSE)))
    sub <- array(as.vector(sub), dim = d[-1])
    if (is.integer(a)) storage.mode(sub) <- "integer"
    if (is.logical(a)) storage.mode(sub) <- "logical"
    json_nest(sub)
  }, "")
  paste0("[", paste(parts, collapse = ","), "]")
}

to_json <- function(x) {
  if (is.null(x)) return("null")
  if (is.list(x)) {
    vals <- vapply(x, to_json, "")
    nm <- names(x)
    if (is.null(nm)) return(paste0("[", paste(vals, collapse = ","), "]"))
    keys <- json_num(nm)
    return(paste0("{", paste(paste0(keys, ":", vals), collapse = ","), "}"))
  }
  if (is.function(x)) return("null")
  if (!is.null(dim(x))) return(json_nest(unname(x)))
  if (length(x) == 1) return(json_num(unname(x)))
  paste0("[", paste(json_num(unname(x)), collapse = ","), "]")
}

write_json_file <- function(x, path) {
  writeLines(to_json(x), path, useBytes = TRUE)
  cat("wrote", path, "\n")
}
