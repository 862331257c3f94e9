# Reference constants for RMST and survival at a fixed time, from R's survival package.
#
# Regenerate (from the repository root):   Rscript tests/reference/rmst_reference.R
# Needs r-base-core and r-cran-survival (Debian: apt-get install r-base-core r-cran-survival).
# The test suite never runs R: it only reads tests/reference/rmst_reference.json.
# The CSVs are lifelines' load_lung() / load_rossi() written by export_datasets.py.
# Formulas (what survival:::survmean and summary.survfit compute): see README.md here.
options(digits = 17)
suppressPackageStartupMessages(library(survival))

here <- "tests/reference"
if (!file.exists(file.path(here, "lung.csv"))) stop("run from the repository root")
lung <- read.csv(file.path(here, "lung.csv"), check.names = FALSE)  # status: 1 = death
rossi <- read.csv(file.path(here, "rossi.csv"), check.names = FALSE)  # arrest: 1 = arrest
conf_level <- 0.95
z <- qnorm(1 - (1 - conf_level) / 2)

# lifelines' lung is R's survival::lung with status recoded 1/2 -> 0/1 (checked, exact).
r_lung <- survival::lung
r_lung$status <- r_lung$status - 1L
lung_is_r_lung <- isTRUE(all.equal(as.matrix(lung), as.matrix(r_lung[names(lung)]),
                                   tolerance = 0, check.attributes = FALSE))
stopifnot(lung_is_r_lung)

# ---- minimal JSON writer (no jsonlite on a bare Debian R); numbers as %.17g ----
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
  stopifnot(length(x) == 1)
  if (is.na(x)) return("null")
  if (is.logical(x)) return(if (x) "true" else "false")
  if (is.character(x)) return(json_str(x))
  stopifnot(is.finite(x))
  sprintf("%.17g", as.numeric(x))
}

diff_entry <- function(group, reference, est, se) {
  d <- est[[group]] - est[[reference]]
  s <- sqrt(se[[group]]^2 + se[[reference]]^2)
  list(group = group, reference = reference, difference = d, se = s,
       ci_lower = d - z * s, ci_upper = d + z * s)
}

cases <- list(
  lung_sex = list(csv = "lung.csv", data = lung, time = "time", event = "status",
                  group = "sex", taus = c(365, 730, 1100), ats = c(180, 365),
                  event_coding = "status: 1 = death, 0 = censored (lifelines coding; R's survival::lung uses 2/1)"),
  rossi_fin = list(csv = "rossi.csv", data = rossi, time = "week", event = "arrest",
                   group = "fin", taus = c(26, 52), ats = c(26, 52),
                   event_coding = "arrest: 1 = arrested, 0 = censored")
)

out <- list()
max_print_vs_summary <- 0
for (case_name in names(cases)) {
  case <- cases[[case_name]]
  d <- case$data
  f <- as.formula(paste0("Surv(", case$time, ", ", case$event, ") ~ ", case$group))
  fit_ll <- survfit(f, data = d, conf.type = "log-log", conf.int = conf_level)
  fit_log <- survfit(f, data = d, conf.type = "log", conf.int = conf_level)  # R's default
  groups <- sub(".*=", "", names(fit_ll$strata))
  reference <- groups[1]
  last_time <- tapply(d[[case$time]], d[[case$group]], max)[groups]
  entry <- list(spec = list(
    csv = case$csv, time = case$time, event = case$event, event_coding = case$event_coding,
    group = case$group, groups = as.list(groups), difference = paste0(
      "group minus reference: ", groups[2], " - ", reference),
    last_time = as.list(setNames(as.numeric(last_time), groups)),
    r_call = paste0("survfit(", deparse(f), ", data = ", sub("\\.csv$", "", case$csv),
                    ', conf.type = "log-log")')))

  for (tau in case$taus) {
    tab <- summary(fit_ll, rmean = tau)$table          # what summary() reports
    prt <- survival:::survmean(fit_ll, rmean = tau)$matrix  # what print(fit, rmean=) reports
    max_print_vs_summary <- max(max_print_vs_summary,
                                abs(tab[, c("rmean", "se(rmean)")] - prt[, c("rmean", "se(rmean)")]))
    g <- list()
    for (k in seq_along(groups)) {
      g[[groups[k]]] <- list(rmean = tab[k, "rmean"], se = tab[k, "se(rmean)"],
                             records = tab[k, "records"], events = tab[k, "events"],
                             last_time = as.numeric(last_time[k]),
                             tau_beyond_last_time = tau > last_time[[k]])
    }
    entry[[paste0("rmst_", tau)]] <- g
    entry[[paste0("diff_rmst_", tau)]] <- diff_entry(
      groups[2], reference, setNames(tab[, "rmean"], groups),
      setNames(tab[, "se(rmean)"], groups))
  }

  for (at in case$ats) {
    s_ll <- summary(fit_ll, times = at)
    s_log <- summary(fit_log, times = at)
    stopifnot(identical(s_ll$surv, s_log$surv), identical(s_ll$std.err, s_log$std.err),
              identical(sub(".*=", "", as.character(s_ll$strata)), groups))
    g <- list()
    for (k in seq_along(groups)) {
      g[[groups[k]]] <- list(surv = s_ll$surv[k], std_err = s_ll$std.err[k],
                             lower = s_ll$lower[k], upper = s_ll$upper[k],
                             log_lower = s_log$lower[k], log_upper = s_log$upper[k],
                             n_risk = s_ll$n.risk[k],
                             cumhaz_se = s_ll$std.err[k] / s_ll$surv[k])
    }
    entry[[paste0("surv_", at)]] <- g
    entry[[paste0("diff_surv_", at)]] <- diff_entry(
      groups[2], reference, setNames(s_ll$surv, groups), setNames(s_ll$std.err, groups))
  }
  out[[case_name]] <- entry
}
stopifnot(max_print_vs_summary == 0)

header <- list(
  regenerate = "Rscript tests/reference/rmst_reference.R",
  run_from = "repository root",
  R = R.version.string,
  survival = as.character(packageVersion("survival")),
  conf_level = conf_level,
  z = z,
  lung_csv_equals_r_survival_lung = lung_is_r_lung,
  print_vs_summary_rmean_max_abs_diff = max_print_vs_summary,
  layout = paste(
    "dataset -> analysis -> group -> values.",
    "rmst_<tau>: summary(fit, rmean = tau)$table per group: rmean, se = se(rmean)",
    "(identical to print(fit, rmean = tau)), records, events, last_time (largest time",
    "in the group), tau_beyond_last_time.",
    "surv_<t>: summary(fit, times = t) per group: surv, std_err (Greenwood SE of S),",
    "lower/upper = 95% CI with conf.type = 'log-log', log_lower/log_upper = 95% CI with",
    "R's default conf.type = 'log', n_risk, cumhaz_se = std_err / surv.",
    "diff_rmst_<tau> / diff_surv_<t>: group minus reference, se = sqrt(se_g^2 + se_ref^2),",
    "ci = difference -/+ z * se."),
  extrapolation = paste(
    "For tau beyond a group's last time (lung tau = 1100: sex 1 ends at 1022, sex 2",
    "at 965) survmean extends the last KM value flat up to tau, silently (no warning,",
    "no NA); the extra area also enters every A_i of the variance.")
)

json <- to_json(c(list(header = header), out))
writeLines(json, file.path(here, "rmst_reference.json"))
cat("wrote", file.path(here, "rmst_reference.json"), "\n")
