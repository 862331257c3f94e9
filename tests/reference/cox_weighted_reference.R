# Reference constants for the case-weighted Cox model with robust (sandwich) standard
# errors (tests/test_cox_weighted.py, issue 12), from R survival.
#
# Regenerate (from the repository root):   Rscript tests/reference/cox_weighted_reference.R
# Needs r-base-core and r-cran-survival; the test suite never runs R, it reads
# tests/reference/cox_weighted_reference.json.
#
# Weights, by row position i = 1..n of the frame after its filter (the test computes
# the same numbers):
#   continuous: v_i = 0.2 + 4.8 * ((i * 0.6180339887498949) %% 1)   (0.2 .. 5)
#   integer:    v_i = 1 + (i %% 4)                                   (1 .. 4)
# Stations: rossi by (i - 1) %% 3 ("s0", "s1", "s2"); lung by institution (`inst`).
# Every case: coxph(..., weights = v, robust = TRUE), Efron and Breslow ties:
#   coef, se = sqrt(diag(fit$var)) (robust), naive_se = sqrt(diag(fit$naive.var)),
#   loglik = fit$loglik (null, final).
options(digits = 17)
suppressPackageStartupMessages(library(survival))

here <- "tests/reference"
if (!file.exists(file.path(here, "rossi.csv"))) stop("run from the repository root")
ctl <- coxph.control(eps = 1e-13, toler.chol = 1e-15, iter.max = 100)

json_str <- function(s) paste0('"', gsub('"', '\\\\"', gsub("\\\\", "\\\\\\\\", s)), '"')
to_json <- function(x, indent = 0) {
  pad <- strrep("  ", indent + 1)
  end <- strrep("  ", indent)
  if (is.list(x)) {
    if (length(x) == 0) return(if (is.null(names(x))) "[]" else "{}")
    items <- vapply(x, to_json, "", indent = indent + 1)
    if (is.null(names(x)))
      return(paste0("[\n", pad, paste(items, collapse = paste0(",\n", pad)), "\n", end, "]"))
    return(paste0("{\n", pad, paste0(json_str(names(x)), ": ", items,
                                     collapse = paste0(",\n", pad)), "\n", end, "}"))
  }
  if (length(x) != 1) return(to_json(as.list(unname(x)), indent))
  if (is.na(x)) return("null")
  if (is.logical(x)) return(if (x) "true" else "false")
  if (is.character(x)) return(json_str(x))
  stopifnot(is.finite(x))
  sprintf("%.17g", as.numeric(x))
}

continuous <- function(n) 0.2 + 4.8 * ((seq_len(n) * 0.6180339887498949) %% 1)
integer <- function(n) 1 + (seq_len(n) %% 4)

entry <- function(fit) {
  named <- function(v) setNames(as.list(v), names(coef(fit)))
  list(coef = named(coef(fit)), se = named(sqrt(diag(fit$var))),
       naive_se = named(sqrt(diag(fit$naive.var))), loglik = as.list(fit$loglik))
}

cases <- function(formula, data) {
  out <- list()
  for (ties in c("efron", "breslow")) {
    fit <- coxph(formula, data = data, weights = v, robust = TRUE, ties = ties,
                 control = ctl)
    out[[ties]] <- entry(fit)
  }
  out
}

rossi <- read.csv(file.path(here, "rossi.csv"))
rossi$station <- c("s0", "s1", "s2")[(seq_len(nrow(rossi)) - 1) %% 3 + 1]
rhs <- "fin + age + race + wexp + mar + paro + prio"
unstratified <- as.formula(paste("Surv(week, arrest) ~", rhs))
stratified <- as.formula(paste("Surv(week, arrest) ~", rhs, "+ strata(station)"))

lung <- read.csv(file.path(here, "lung.csv"), check.names = FALSE)
lung <- lung[!is.na(lung$inst) & !is.na(lung[["ph.ecog"]]), ]
lung$ecog <- lung[["ph.ecog"]]

out <- list()
rossi$v <- rep(1, nrow(rossi))
out[["rossi_unweighted_stratified"]] <- cases(stratified, rossi)
rossi$v <- continuous(nrow(rossi))
out[["rossi_continuous_unstratified"]] <- cases(unstratified, rossi)
out[["rossi_continuous_stratified"]] <- cases(stratified, rossi)
rossi$v <- integer(nrow(rossi))
out[["rossi_integer_stratified"]] <- cases(stratified, rossi)
lung$v <- continuous(nrow(lung))
out[["lung_continuous_by_inst"]] <- cases(
  Surv(time, status) ~ age + sex + ecog + strata(inst), lung)
out[["lung_continuous_unstratified"]] <- cases(Surv(time, status) ~ age + sex + ecog, lung)

header <- list(
  regenerate = "Rscript tests/reference/cox_weighted_reference.R",
  R = paste(R.version$major, R.version$minor, sep = "."),
  survival = as.character(packageVersion("survival")),
  weights = list(continuous = "0.2 + 4.8 * ((i * 0.6180339887498949) %% 1)",
                 integer = "1 + (i %% 4)"),
  rows = list(rossi = nrow(rossi), lung = nrow(lung)),
  fields = "coef; se = sqrt(diag(fit$var)) (robust); naive_se = sqrt(diag(fit$naive.var)); loglik = fit$loglik")
writeLines(to_json(c(list(header = header), out)),
           file.path(here, "cox_weighted_reference.json"))
