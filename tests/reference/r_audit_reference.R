# Reference constants for tests/test_r_audit.py (issue 10, item 6: the audit against R).
#
# Regenerate (from the repository root):   Rscript tests/reference/r_audit_reference.R
# Needs r-base-core and r-cran-survival (Debian: apt-get install r-base-core r-cran-survival).
# The test suite never runs R: it only reads tests/reference/r_audit_reference.json.
# The CSVs are lifelines' load_lung() / load_rossi() written by export_datasets.py.
#
# Each case is the analysis on the pooled rows of the stations the test builds. The
# stations hold the same column with different storage types (int64 at one, float64
# with a missing value at another); R sees one numeric column, so the federated
# result must not depend on those types. A missing value is NA here and the row is
# left out, exactly as the station leaves it out of its population.
options(digits = 17)
suppressPackageStartupMessages(library(survival))

here <- "tests/reference"
if (!file.exists(file.path(here, "lung.csv"))) stop("run from the repository root")
lung <- read.csv(file.path(here, "lung.csv"), check.names = FALSE)    # status: 1 = death
rossi <- read.csv(file.path(here, "rossi.csv"), check.names = FALSE)  # arrest: 1 = arrest

# ---- minimal JSON writer (no jsonlite on a bare Debian R); numbers as %.17g ----
json_str <- function(s) paste0('"', gsub('"', '\\\\"', gsub("\\\\", "\\\\\\\\", s)), '"')
to_json <- function(x, indent = 0) {
  pad <- strrep("  ", indent + 1)
  end <- strrep("  ", indent)
  if (is.list(x)) {
    if (length(x) == 0) return(if (is.null(names(x))) "[]" else "{}")
    items <- vapply(x, to_json, "", indent = indent + 1)
    if (is.null(names(x)))
      return(paste0("[", paste(items, collapse = ", "), "]"))
    return(paste0("{\n", pad, paste0(json_str(names(x)), ": ", items,
                                     collapse = paste0(",\n", pad)), "\n", end, "}"))
  }
  stopifnot(length(x) == 1)
  if (is.na(x)) return("null")
  if (is.logical(x)) return(if (x) "true" else "false")
  if (is.character(x)) return(json_str(x))
  stopifnot(is.finite(x))
  sprintf("%.17g", as.numeric(x))
}
vec <- function(x) as.list(as.numeric(x))

cox_entry <- function(fit, names, call) {
  s <- summary(fit)
  list(r_call = call, n = fit$n, events = fit$nevent,
       coef = as.list(setNames(as.numeric(coef(fit)), names)),
       se = as.list(setNames(as.numeric(sqrt(diag(vcov(fit)))), names)),
       p_value = as.list(setNames(as.numeric(s$coefficients[, "Pr(>|z|)"]), names)),
       loglik = fit$loglik[2], null_loglik = fit$loglik[1])
}

# converged to rounding: Newton-Raphson until the log-likelihood changes by < 1e-13
tight <- coxph.control(eps = 1e-13, toler.chol = 1e-15, iter.max = 100)

out <- list()

# 1. rossi, stratified Cox, fin held as int64 at s0 and s2 and as float64 with a
#    missing value at s1 (python row 1 = R row 2). Stations: row index (from 0) mod 3.
r <- rossi
r$station <- (seq_len(nrow(r)) - 1) %% 3
r$fin[2] <- NA
fit <- coxph(Surv(week, arrest) ~ factor(fin) + age + prio + strata(station),
             data = r, ties = "efron", control = tight)
out$rossi_fin_stratified <- cox_entry(
  fit, c("fin[T.1]", "age", "prio"),
  "coxph(Surv(week, arrest) ~ factor(fin) + age + prio + strata(station), ties = 'efron'); fin[2] <- NA")
out$rossi_fin_stratified$reference <- levels(factor(r$fin))[1]

# 2. lung, stratified Cox by institution group (a: inst <= 11, b: inst > 11) with the
#    Karnofsky score in bands 60 (<= 60), 80 (70-80), 100 (90-100) as a factor: R orders
#    numeric levels by value, so the reference is 60 (text order would give "100").
l <- lung[!is.na(lung$inst), ]
l$station <- ifelse(l$inst <= 11, "a", "b")
l$karno <- ifelse(l$ph.karno <= 60, 60, ifelse(l$ph.karno <= 80, 80, 100))
l <- l[complete.cases(l[, c("time", "status", "age", "karno")]), ]
fit <- coxph(Surv(time, status) ~ factor(karno) + age + strata(station), data = l,
             ties = "efron", control = tight)
out$lung_karno_stratified <- cox_entry(
  fit, c("karno[T.80]", "karno[T.100]", "age"),
  "coxph(Surv(time, status) ~ factor(karno) + age + strata(station), ties = 'efron')")
out$lung_karno_stratified$levels <- as.list(levels(factor(l$karno)))

# 3. lung, Kaplan-Meier and log-rank by sex on exact times; stations: row index (from
#    0) mod 3; sex missing in python row 1 (R row 2). Survival at 1000 days: sex 2's
#    follow-up ends at 965, so R's summary(fit, times = 1000) has sex 1 only.
k <- lung
k$station <- (seq_len(nrow(k)) - 1) %% 3
k$sex[2] <- NA
fit <- survfit(Surv(time, status) ~ sex, data = k, conf.type = "log-log")
groups <- sub(".*=", "", names(fit$strata))
curves <- list()
ends <- cumsum(fit$strata)
starts <- c(1, head(ends, -1) + 1)
for (g in seq_along(groups)) {
  i <- starts[g]:ends[g]
  curves[[groups[g]]] <- list(time = vec(fit$time[i]), surv = vec(fit$surv[i]),
                              lower = vec(fit$lower[i]), upper = vec(fit$upper[i]),
                              n_risk = vec(fit$n.risk[i]), n_event = vec(fit$n.event[i]),
                              last_time = max(k$time[!is.na(k$sex) & k$sex == groups[g]]))
}
# R (survival 3.5) refuses S(1000) for a curve whose follow-up ends before 1000 ("no
# points selected ... consider using the extend argument"): not estimable there
at_1000 <- list()
for (g in seq_along(groups)) {
  at_1000[[groups[g]]] <- tryCatch({
    s <- summary(fit[g], times = 1000)
    list(estimable = TRUE, surv = s$surv, std_err = s$std.err, lower = s$lower,
         upper = s$upper, n_risk = s$n.risk)
  }, error = function(e) list(estimable = FALSE, r_error = conditionMessage(e)))
}
plain <- survdiff(Surv(time, status) ~ sex, data = k)
strat <- survdiff(Surv(time, status) ~ sex + strata(station), data = k)
out$lung_sex_km <- list(
  r_call = "survfit(Surv(time, status) ~ sex, conf.type = 'log-log'); sex[2] <- NA",
  n = sum(!is.na(k$sex)),
  curves = curves,
  logrank = list(statistic = plain$chisq, df = length(plain$n) - 1),
  logrank_stratified = list(statistic = strat$chisq, df = length(strat$n) - 1),
  survival_at_1000 = at_1000)

header <- list(
  regenerate = "Rscript tests/reference/r_audit_reference.R",
  run_from = "repository root",
  R = R.version.string,
  survival = as.character(packageVersion("survival")))

json <- to_json(c(list(header = header), out))
writeLines(json, file.path(here, "r_audit_reference.json"))
cat("wrote", file.path(here, "r_audit_reference.json"), "\n")
