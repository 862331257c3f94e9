# Reference constants for RMST and survival at a fixed time, from R's survival package.
# Regenerate with:  Rscript tests/reference/rmst_reference.R   (from the repository root)
# Needs r-base-core and r-cran-survival (Debian). The test suite only reads the JSON.
library(survival)
here <- "tests/reference"
lung <- read.csv(file.path(here, "lung.csv"))     # lifelines' load_lung(): status 1 = dead
rossi <- read.csv(file.path(here, "rossi.csv"))   # lifelines' load_rossi()
num <- function(x) sprintf("%.17g", x)

cases <- list(
  list(name = "lung_sex", data = lung, time = "time", event = "status", group = "sex",
       taus = c(365, 730, 1100), ats = c(180, 365)),
  list(name = "rossi_fin", data = rossi, time = "week", event = "arrest", group = "fin",
       taus = c(26, 52), ats = c(26, 52))
)
out <- c()
for (case in cases) {
  d <- case$data
  f <- as.formula(paste0("Surv(", case$time, ", ", case$event, ") ~ ", case$group))
  fit <- survfit(f, data = d, conf.type = "log-log")
  groups <- sub(".*=", "", names(fit$strata))
  entries <- c()
  for (tau in case$taus) {
    tab <- summary(fit, rmean = tau)$table
    g <- paste0('"', groups, '": {"rmean": ', num(tab[, "rmean"]), ', "se": ',
                num(tab[, "se(rmean)"]), "}", collapse = ", ")
    entries <- c(entries, paste0('"rmst_', tau, '": {', g, "}"))
  }
  for (at in case$ats) {
    s <- summary(fit, times = at)
    g <- paste0('"', groups, '": {"surv": ', num(s$surv), ', "std_err": ', num(s$std.err),
                ', "lower": ', num(s$lower), ', "upper": ', num(s$upper), "}",
                collapse = ", ")
    entries <- c(entries, paste0('"surv_', at, '": {', g, "}"))
  }
  out <- c(out, paste0('"', case$name, '": {', paste(entries, collapse = ", "), "}"))
}
header <- paste0('"generated_by": "Rscript tests/reference/rmst_reference.R", "R": "',
                 R.version.string, '", "survival": "', packageVersion("survival"), '"')
writeLines(paste0("{", header, ", ", paste(out, collapse = ", "), "}"),
           file.path(here, "rmst_reference.json"))
