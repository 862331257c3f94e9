# Reference constants for the Cox model checks (tests/test_cox_checks.py), from R survival.
#
# Regenerate (from the repository root):   Rscript tests/reference/cox_checks_reference.R
# Needs r-base-core and r-cran-survival; the test suite never runs R, it reads
# tests/reference/cox_checks_reference.json (and cox_checks_pooled.csv, written here).
#
# stratified: lung (lung.csv) without missing or level-3 ph.ecog, stations s0/s1 by row
#   parity after that filter; coxph(Surv(time, status) ~ age + sex + factor(ecog) +
#   strata(station)), Efron and Breslow; cox.zph(fit, transform = "log", terms = TRUE);
#   fit$concordance; each station's own coxph; Cochran's Q, I^2 and DerSimonian-Laird
#   tau^2 written out by hand from the per-station fits.
# pooled: synthetic rows with integer times 1..20, 2 events and 2 censorings of every
#   level of grp at every time at each station (so a station's grid, step 1 and
#   k <= 2, merged per covariate pattern, is the times themselves); coxph(Surv(time, status) ~ x + grp) without strata (one baseline
#   hazard); the concordance within stations, from that fit's linear predictor.
options(digits = 17)
suppressPackageStartupMessages(library(survival))

here <- "tests/reference"
if (!file.exists(file.path(here, "lung.csv"))) stop("run from the repository root")
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

zph_table <- function(fit) {
  tab <- cox.zph(fit, transform = "log", terms = TRUE)$table
  rows <- lapply(rownames(tab), function(r)
    list(chisq = tab[r, "chisq"], df = tab[r, "df"], p = tab[r, "p"]))
  names(rows) <- rownames(tab)
  rows
}

conc_entry <- function(cf) {
  if (is.matrix(cf$count)) cf$count <- colSums(cf$count)  # per stratum: summed
  list(concordant = cf$count[["concordant"]], discordant = cf$count[["discordant"]],
       tied_risk = cf$count[["tied.x"]], c = cf$concordance, se = sqrt(cf$var))
}

own_fits <- function(data, formula, ties) {
  out <- list()
  for (s in sort(unique(data$station))) {
    f <- coxph(formula, data = data[data$station == s, ], ties = ties, control = ctl)
    out[[s]] <- list(coef = as.list(coef(f)), se = as.list(sqrt(diag(vcov(f)))))
  }
  out
}

# DerSimonian & Laird (1986), Higgins & Thompson (2002), by hand
het <- function(fits) {
  params <- names(fits[[1]]$coef)
  out <- list()
  for (p in params) {
    y <- sapply(fits, function(f) f$coef[[p]])
    w <- 1 / sapply(fits, function(f) f$se[[p]])^2
    fe <- sum(w * y) / sum(w)
    q <- sum(w * (y - fe)^2)
    df <- length(y) - 1
    out[[p]] <- list(q = q, df = df, p = pchisq(q, df, lower.tail = FALSE),
                     i2 = max(0, (q - df) / q),
                     tau2 = max(0, (q - df) / (sum(w) - sum(w^2) / sum(w))))
  }
  out
}

fit_entry <- function(fit) {
  list(coef = as.list(coef(fit)), se = as.list(sqrt(diag(vcov(fit)))))
}

# ---- stratified: lung ----
lung <- read.csv(file.path(here, "lung.csv"), check.names = FALSE)
lung <- lung[!is.na(lung[["ph.ecog"]]) & lung[["ph.ecog"]] != 3, ]
lung$ecog <- factor(lung[["ph.ecog"]])
lung$station <- c("s0", "s1")[(seq_len(nrow(lung)) - 1) %% 2 + 1]
out <- list()
for (ties in c("efron", "breslow")) {
  fit <- coxph(Surv(time, status) ~ age + sex + ecog + strata(station), data = lung,
               ties = ties, control = ctl)
  fits <- own_fits(lung, Surv(time, status) ~ age + sex + ecog, ties)
  out[[paste0("lung_stratified_", ties)]] <- list(
    rows = nrow(lung), fit = fit_entry(fit), ph = zph_table(fit),
    concordance = conc_entry(concordance(fit)), stations = fits,
    heterogeneity = het(fits))
}

# ---- pooled: synthetic, times on the grid ----
set.seed(20260611)
parts <- lapply(c("s0", "s1"), function(s) {
  time <- rep(1:20, each = 12)
  grp <- rep(rep(c("a", "b", "c"), each = 4), 20)
  status <- rep(c(1, 1, 0, 0), 60)
  x <- round(rnorm(240) + 0.04 * time * status + 0.2 * (grp == "b") * time / 20, 3)
  data.frame(station = s, time = time, status = status, x = x, grp = grp)
})
pooled <- do.call(rbind, parts)
write.csv(pooled, file.path(here, "cox_checks_pooled.csv"), row.names = FALSE)
pooled <- read.csv(file.path(here, "cox_checks_pooled.csv"))
fit <- coxph(Surv(time, status) ~ x + grp, data = pooled, ties = "efron", control = ctl)
within <- concordance(Surv(time, status) ~ lp + strata(station),
                      data = data.frame(pooled, lp = fit$linear.predictors),
                      reverse = TRUE)
fits <- own_fits(pooled, Surv(time, status) ~ x + grp, "efron")
out[["pooled_efron"]] <- list(
  rows = nrow(pooled), fit = fit_entry(fit), ph = zph_table(fit),
  concordance = conc_entry(within), stations = fits, heterogeneity = het(fits))

header <- list(
  regenerate = "Rscript tests/reference/cox_checks_reference.R",
  R = paste(R.version$major, R.version$minor, sep = "."),
  survival = as.character(packageVersion("survival")),
  ph = "cox.zph(fit, transform = 'log', terms = TRUE)$table: chisq, df, p per term and GLOBAL",
  concordance = "concordant, discordant, tied.x (tied_risk), concordance, sqrt(var)")
writeLines(to_json(c(list(header = header), out)), file.path(here, "cox_checks_reference.json"))
