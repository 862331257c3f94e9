# Reference constants for tests/test_nma_algorithms.py (issue 13, network meta-analysis).
#
# Run from the repository root:  Rscript tests/reference/nma_reference.R
# Needs R >= 4 with metafor and metadat (Debian: r-cran-metafor r-cran-metadat).
#
# netmeta is not packaged for Debian, so the oracle is metafor's rma.mv: the
# contrast-based common-effect network model fitted by generalised least squares with
# the full multi-arm covariance (two contrasts of a study sharing its baseline arm
# covary by that arm's variance). netmeta's graph-theoretical fit with reduced weights
# (Ruecker & Schwarzer 2014) is the same model, so its estimates, SEs and Q must agree.
#
# Written out by hand from the formulas (netmeta's documentation, Ruecker 2012,
# Jackson et al. 2012, Krahn et al. 2013, Ruecker & Schwarzer 2015), on top of rma.mv:
#   tau2   generalised DerSimonian-Laird in GLS form: (QE - df) / tr(P V0), P the GLS
#          residual projector V^-1 - V^-1 X (X' V^-1 X)^-1 X' V^-1, V0 the heterogeneity
#          pattern (1 on the diagonal, 1/2 between contrasts of one study)
#   random rma.mv with V + tau2 * V0 (netmeta adds tau2 to each contrast's variance
#          before the multi-arm reduction, which is this covariance)
#   Q within designs: the sum over designs (sets of arms) of rma.mv's QE with a free
#          effect per design; between designs = total - within
#   split  direct: rma(method = "FE") on the pair's contrasts (vi, or vi + tau2);
#          indirect by back-calculation; P-scores: mean of pnorm(-z) over the others
#
# Data: metadat's dat.senn2013 (26 studies, one 3-arm, mean differences of HbA1c from
# arm means and SDs, variance sd^2 / n) and dat.hasselblad1998 (24 studies, two 3-arm,
# log odds ratios; two studies with a zero cell get 0.5 added to every cell of every
# arm, as netmeta's pairwise() does for a study with a zero cell). Contrasts are every
# pair of arms of a study in the data's row order (treat1 = earlier row).
# Numbers are written with 17 significant digits so they round-trip.

suppressPackageStartupMessages({
  library(metafor)
  library(metadat)
  library(jsonlite)
})

arms_senn <- function() {
  d <- dat.senn2013
  data.frame(study = d$study, treat = d$treatment, y = d$mi, v = d$sdi^2 / d$ni,
             stringsAsFactors = FALSE)
}

arms_hasselblad <- function() {
  d <- dat.hasselblad1998
  zero <- ave(d$xi == 0 | d$xi == d$ni, d$study, FUN = any)
  x <- d$xi + ifelse(zero, 0.5, 0)
  n <- d$ni + ifelse(zero, 1, 0)
  data.frame(study = as.character(d$study), treat = d$trt,
             y = log(x / (n - x)), v = 1 / x + 1 / (n - x),
             stringsAsFactors = FALSE)
}

contrasts_of <- function(a) {
  out <- NULL
  for (s in unique(a$study)) {
    r <- a[a$study == s, ]
    for (i in 1:(nrow(r) - 1)) for (j in (i + 1):nrow(r)) {
      out <- rbind(out, data.frame(studlab = s, treat1 = r$treat[i],
                                   treat2 = r$treat[j], TE = r$y[i] - r$y[j],
                                   seTE = sqrt(r$v[i] + r$v[j]),
                                   stringsAsFactors = FALSE))
    }
  }
  out
}

# basic contrasts (each arm minus the study's first arm), design matrix over `trts`
# without its first element, the multi-arm covariance and the heterogeneity pattern
basic <- function(a, trts) {
  y <- c(); X <- NULL; blocks <- list(); blocks0 <- list(); sid <- c()
  for (s in unique(a$study)) {
    r <- a[a$study == s, ]
    k <- nrow(r)
    for (j in 2:k) {
      y <- c(y, r$y[j] - r$y[1])
      row <- setNames(numeric(length(trts)), trts)
      row[r$treat[j]] <- 1
      row[r$treat[1]] <- row[r$treat[1]] - 1
      X <- rbind(X, row[-1])
      sid <- c(sid, s)
    }
    blocks[[s]] <- diag(r$v[-1], nrow = k - 1) + r$v[1]
    blocks0[[s]] <- diag(0.5, nrow = k - 1) + 0.5
  }
  list(y = y, X = X, V = bldiag(blocks), V0 = bldiag(blocks0), study = sid)
}

pairwise_from <- function(fit, trts) {
  n <- length(trts)
  d <- c(0, coef(fit))
  C <- matrix(0, n, n)
  C[-1, -1] <- vcov(fit)
  te <- outer(d, d, "-")
  se <- sqrt(outer(diag(C), diag(C), "+") - 2 * C)
  dimnames(te) <- dimnames(se) <- list(trts, trts)
  list(te = te, se = se)
}

side <- function(con, est, tau2) {
  trts <- rownames(est$te)
  rows <- list()
  for (i in 1:(length(trts) - 1)) for (j in (i + 1):length(trts)) {
    t1 <- trts[i]; t2 <- trts[j]
    sel <- (con$treat1 == t1 & con$treat2 == t2) | (con$treat1 == t2 & con$treat2 == t1)
    if (!any(sel)) next
    yi <- ifelse(con$treat1[sel] == t1, con$TE[sel], -con$TE[sel])
    vi <- con$seTE[sel]^2 + tau2
    m <- rma(yi, vi, method = "FE")
    te.d <- as.numeric(coef(m)); se.d <- m$se
    te.n <- est$te[t1, t2]; se.n <- est$se[t1, t2]
    p <- se.n^2 / se.d^2
    row <- list(treat1 = t1, treat2 = t2, studies = sum(sel), prop_direct = p,
                direct_te = te.d, direct_se = se.d)
    if (abs(p - 1) >= 0.0005) {
      te.i <- (te.n - p * te.d) / (1 - p)
      se.i <- se.n / sqrt(1 - p)
      row$indirect_te <- te.i
      row$indirect_se <- se.i
      row$diff_te <- te.d - te.i
      row$diff_se <- sqrt(se.d^2 + se.i^2)
      row$diff_p <- 2 * pnorm(-abs(row$diff_te / row$diff_se))
    }
    rows[[length(rows) + 1]] <- row
  }
  rows
}

pscores <- function(est, good = TRUE) {
  z <- est$te / est$se
  p <- if (good) pnorm(-z) else pnorm(z)
  diag(p) <- NA
  rowMeans(p, na.rm = TRUE)
}

analyse <- function(a, name) {
  trts <- sort(unique(a$treat))
  con <- contrasts_of(a)
  b <- basic(a, trts)
  fit <- rma.mv(b$y, b$V, mods = b$X, intercept = FALSE)
  common <- pairwise_from(fit, trts)
  df <- fit$k - fit$p
  Vi <- solve(b$V)
  P <- Vi - Vi %*% b$X %*% solve(t(b$X) %*% Vi %*% b$X) %*% t(b$X) %*% Vi
  tau2 <- max(0, (fit$QE - df) / sum(diag(P %*% b$V0)))
  fit_r <- rma.mv(b$y, b$V + tau2 * b$V0, mods = b$X, intercept = FALSE)
  random <- pairwise_from(fit_r, trts)
  # design-by-treatment decomposition
  design <- sapply(unique(a$study), function(s)
    paste(sort(a$treat[a$study == s]), collapse = ":"))
  q_within <- 0; df_within <- 0; designs <- list()
  for (d in sort(unique(design))) {
    studies <- names(design)[design == d]
    if (length(studies) < 2) next
    ad <- a[a$study %in% studies, ]
    td <- sort(unique(ad$treat))
    bd <- basic(ad, td)
    fd <- rma.mv(bd$y, bd$V, mods = bd$X, intercept = FALSE)
    q_within <- q_within + fd$QE
    df_within <- df_within + fd$k - fd$p
    designs[[length(designs) + 1]] <- list(design = d, q = fd$QE, df = fd$k - fd$p)
  }
  list(
    name = name,
    treatments = trts,
    contrasts = con,
    common = list(te = unname(common$te), se = unname(common$se)),
    random = list(te = unname(random$te), se = unname(random$se)),
    q = fit$QE, df = df,
    q_within = q_within, df_within = df_within,
    q_between = fit$QE - q_within, df_between = df - df_within,
    designs = designs,
    tau2 = tau2,
    i2 = max(0, (fit$QE - df) / fit$QE),
    pscores_common_good = as.numeric(pscores(common)),
    pscores_random_bad = as.numeric(pscores(random, good = FALSE)),
    split_common = side(con, common, 0),
    split_random = side(con, random, tau2)
  )
}

# numbers as %.17g text (jsonlite rounds to 15 digits), inserted verbatim
exact <- function(x) {
  if (is.data.frame(x))
    return(lapply(seq_len(nrow(x)), function(i) exact(as.list(x[i, , drop = FALSE]))))
  if (is.list(x))
    return(lapply(x, exact))
  if (!is.numeric(x))
    return(x)
  num <- function(v) paste(sprintf("%.17g", v), collapse = ", ")
  txt <- if (is.matrix(x)) {
    paste0("[", paste0("[", apply(x, 1, num), "]", collapse = ", "), "]")
  } else if (length(x) == 1 && is.null(names(x))) {
    num(x)
  } else {
    paste0("[", num(x), "]")
  }
  structure(txt, class = "json")
}

out <- list(
  header = list(
    regenerate = "Rscript tests/reference/nma_reference.R",
    R = R.version.string,
    metafor = as.character(packageVersion("metafor")),
    metadat = as.character(packageVersion("metadat")),
    oracle = "rma.mv(yi, V, mods = X, intercept = FALSE): GLS with the multi-arm covariance"
  ),
  senn2013 = analyse(arms_senn(), "dat.senn2013 (mean difference of HbA1c)"),
  hasselblad1998 = analyse(arms_hasselblad(), "dat.hasselblad1998 (log odds ratio)")
)
writeLines(toJSON(exact(out), auto_unbox = TRUE, pretty = TRUE, json_verbatim = TRUE),
           "tests/reference/nma_reference.json")
