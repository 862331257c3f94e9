# Reference constants for arm-level data -> contrasts as R's pairwise() does
# (meta::pairwise, formerly netmeta::pairwise) for tests/test_pairwise.py (issue 13,
# published trials as network meta-analysis input), from metafor's escalc().
#
# Regenerate (from the repository root):   Rscript tests/reference/pairwise_reference.R
# Needs r-base-core, r-cran-metafor and r-cran-metadat; the test suite never runs R, it
# reads tests/reference/pairwise_reference.json (which also holds the input arms).
#
# meta/netmeta are not Debian packages, so this script applies pairwise()'s rules
# (meta 8.4-0 source: R/pairwise.R, R/metabin.R, R/metacont.R) and lets escalc()
# compute every estimate its formulas share with meta:
#   * arms in data order; a study with arms 1..k gives the pairs (i, j), i < j,
#     treat1 = arm i, treat2 = arm j, effect = arm i versus arm j;
#   * increment 0.5 for EVERY pair of a study in which ANY arm has 0 events or only
#     events (pairwise()'s per-study rule, method.incr = "only0" applied to the study,
#     not to the 2x2 table). escalc's own to = "only0" looks at one 2x2 table only,
#     so the script calls escalc(add = 1/2, to = "all") on the pairs of such studies
#     and escalc(to = "none") on the others; in hasselblad1998 the two rules agree
#     (its zero cells are in two-arm studies), the synthetic set has multi-arm cases
#     where they differ;
#   * OR: escalc("OR") with drop00 = TRUE (a pair with 0 events in both arms or only
#     events in both arms is not estimable: allstudies = FALSE);
#   * RR: meta's default (RR.Cochrane = FALSE) adds the increment once to n, not
#     twice as escalc("RR") does: log(((a+h)/(n+h)) / ((c+h)/(m+h))), variance
#     1/(a+h') - 1/(n+h) + 1/(c+h') - 1/(m+h), h' = 0 if both arms have only events
#     (Hartung & Knapp 2001, eq. 18); written out here, and equal to escalc("RR") on
#     every pair without increment (checked below); pairs with 0 events in both arms
#     are left out, pairs with only events in both arms are kept (estimate 0);
#   * RD: estimate escalc("RD", to = "none") (no increment), variance escalc("RD")
#     with the increment (to = "all" on the study's pairs), never left out;
#   * MD: escalc("MD"), vtype "LS": sd1^2/n1 + sd2^2/n2;
#   * SMD: pairwise() uses Cohen's d (method.smd = "Cohen"; escalc("SMD") is Hedges' g)
#     with the SD pooled over ALL arms of the study, sqrt(sum (n-1) sd^2 / sum (n-1)),
#     and Crippa & Orsini (2016) eq. 5: 1/n1 + 1/n2 + d^2 / (2 N), N = the study's
#     patients in all arms. Written out here; for two-arm studies checked against
#     escalc("SMD") / J (J = metafor's exact bias factor) and its "LS" variance.
options(digits = 17)
suppressPackageStartupMessages({
  library(metafor)
  library(metadat)
})

here <- "tests/reference"
if (!dir.exists(here)) stop("run from the repository root")

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
rows_of <- function(df) lapply(seq_len(nrow(df)), function(i) as.list(df[i, , drop = FALSE]))

# all pairs (i < j) of each study, arms in data order
pairs_of <- function(arms, cols) {
  out <- list()
  for (s in unique(arms$studlab)) {
    a <- arms[arms$studlab == s, ]
    for (i in seq_len(nrow(a) - 1)) for (j in (i + 1):nrow(a)) {
      row <- data.frame(studlab = s, treat1 = a$treatment[i], treat2 = a$treatment[j])
      for (col in cols) {
        row[[paste0(col, "1")]] <- a[[col]][i]
        row[[paste0(col, "2")]] <- a[[col]][j]
      }
      out[[length(out) + 1]] <- row
    }
  }
  do.call(rbind, out)
}

binary_cases <- function(arms) {
  sparse_study <- tapply(arms$events == 0 | arms$events == arms$n, arms$studlab, any)
  p <- pairs_of(arms, c("n", "events"))
  p$incr <- ifelse(sparse_study[p$studlab], 0.5, 0)
  sp <- p$incr > 0
  both0 <- p$events1 == 0 & p$events2 == 0
  bothall <- p$events1 == p$n1 & p$events2 == p$n2
  esc <- function(measure, to, drop00 = FALSE)
    escalc(measure, ai = events1, n1i = n1, ci = events2, n2i = n2, data = p,
           add = 1 / 2, to = to, drop00 = drop00)
  pick <- function(x_all, x_none) ifelse(sp, x_all, x_none)
  # OR
  or_all <- esc("OR", "all", TRUE)
  or_none <- suppressWarnings(esc("OR", "none", TRUE))
  or <- data.frame(TE = pick(or_all$yi, or_none$yi), seTE = sqrt(pick(or_all$vi, or_none$vi)))
  stopifnot(identical(is.na(or$TE), both0 | bothall))
  # RR (meta's formula; escalc's on pairs without increment)
  h <- p$incr
  hp <- ifelse(bothall, 0, h)
  rr <- data.frame(
    TE = log((p$events1 + h) / (p$n1 + h)) - log((p$events2 + h) / (p$n2 + h)),
    seTE = sqrt(1 / (p$events1 + hp) - 1 / (p$n1 + h) + 1 / (p$events2 + hp) - 1 / (p$n2 + h)))
  rr[both0, ] <- NA
  rr_none <- suppressWarnings(esc("RR", "none"))
  stopifnot(isTRUE(all.equal(rr$TE[!sp], as.numeric(rr_none$yi[!sp]), tolerance = 1e-14)),
            isTRUE(all.equal(rr$seTE[!sp]^2, as.numeric(rr_none$vi[!sp]), tolerance = 1e-14)))
  # RD
  rd_all <- esc("RD", "all")
  rd_none <- suppressWarnings(esc("RD", "none"))
  rd <- data.frame(TE = as.numeric(rd_none$yi), seTE = sqrt(pick(rd_all$vi, rd_none$vi)))
  out <- list()
  for (m in c("OR", "RR", "RD")) {
    r <- switch(m, OR = or, RR = rr, RD = rd)
    keep <- !is.na(r$TE)
    res <- data.frame(studlab = p$studlab, treat1 = p$treat1, treat2 = p$treat2,
                      TE = as.numeric(r$TE), seTE = as.numeric(r$seTE), n1 = p$n1,
                      n2 = p$n2, incr = p$incr)
    out[[m]] <- list(contrasts = rows_of(res[keep, ]),
                     left_out = rows_of(res[!keep, c("studlab", "treat1", "treat2")]))
  }
  out
}

continuous_cases <- function(arms) {
  p <- pairs_of(arms, c("n", "mean", "sd"))
  md <- escalc("MD", m1i = mean1, sd1i = sd1, n1i = n1, m2i = mean2, sd2i = sd2,
               n2i = n2, data = p)
  pooled <- tapply(seq_len(nrow(arms)), arms$studlab, function(i)
    sqrt(sum((arms$n[i] - 1) * arms$sd[i]^2) / sum(arms$n[i] - 1)))
  total <- tapply(arms$n, arms$studlab, sum)
  d <- (p$mean1 - p$mean2) / pooled[p$studlab]
  smd_se <- sqrt(1 / p$n1 + 1 / p$n2 + d^2 / (2 * total[p$studlab]))
  two_arm <- table(arms$studlab)[p$studlab] == 2
  g <- escalc("SMD", m1i = mean1, sd1i = sd1, n1i = n1, m2i = mean2, sd2i = sd2,
              n2i = n2, data = p)
  J <- metafor:::.cmicalc(p$n1 + p$n2 - 2)
  d_escalc <- as.numeric(g$yi) / J
  v_escalc <- 1 / p$n1 + 1 / p$n2 + d_escalc^2 / (2 * (p$n1 + p$n2))
  stopifnot(isTRUE(all.equal(as.numeric(d[two_arm]), d_escalc[two_arm], tolerance = 1e-13)),
            isTRUE(all.equal(as.numeric(smd_se[two_arm]), sqrt(v_escalc[two_arm]),
                             tolerance = 1e-13)))
  base <- data.frame(studlab = p$studlab, treat1 = p$treat1, treat2 = p$treat2)
  list(
    MD = list(contrasts = rows_of(cbind(base, TE = as.numeric(md$yi),
                                        seTE = sqrt(as.numeric(md$vi)), n1 = p$n1,
                                        n2 = p$n2))),
    SMD = list(contrasts = rows_of(cbind(base, TE = as.numeric(d),
                                         seTE = as.numeric(smd_se), n1 = p$n1,
                                         n2 = p$n2))))
}

h98 <- dat.hasselblad1998
hasselblad <- data.frame(studlab = as.character(h98$study), treatment = h98$trt,
                         n = h98$ni, events = h98$xi)

synthetic <- data.frame(
  studlab = c("zero3", "zero3", "zero3", "both0", "both0", "all2", "all2",
              "two0", "two0", "two0", "plain", "plain", "one_all", "one_all"),
  treatment = c("A", "B", "C", "A", "B", "A", "C", "A", "B", "C", "B", "C", "A", "B"),
  n = c(20, 25, 30, 15, 18, 12, 10, 10, 12, 11, 40, 38, 20, 20),
  events = c(0, 6, 9, 0, 0, 12, 10, 0, 0, 4, 5, 11, 7, 20))

s13 <- dat.senn2013
senn <- data.frame(studlab = s13$study, treatment = s13$treatment, n = s13$ni,
                   mean = s13$mi, sd = s13$sdi)

out <- list(
  hasselblad1998 = c(list(arms = rows_of(hasselblad)), binary_cases(hasselblad)),
  synthetic_binary = c(list(arms = rows_of(synthetic)), binary_cases(synthetic)),
  senn2013 = c(list(arms = rows_of(senn)), continuous_cases(senn)))

header <- list(
  regenerate = "Rscript tests/reference/pairwise_reference.R",
  R = paste(R.version$major, R.version$minor, sep = "."),
  metafor = as.character(packageVersion("metafor")),
  metadat = as.character(packageVersion("metadat")),
  rules = "meta::pairwise defaults (incr 0.5 per study with a zero or all-events arm, allstudies FALSE, RR.Cochrane FALSE, SMD = Cohen's d with Crippa-Orsini SE); see the comments at the top of the script",
  layout = "dataset -> {arms, <measure>: {contrasts: [{studlab, treat1, treat2, TE, seTE, n1, n2, incr}], left_out: [{studlab, treat1, treat2}]}}")
writeLines(to_json(c(list(header = header), out)), file.path(here, "pairwise_reference.json"))
cat("wrote", file.path(here, "pairwise_reference.json"), "\n")
