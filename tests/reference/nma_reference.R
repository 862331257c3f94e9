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
#   REML, ML  rma.mv(y, V, mods = X, random = ~ factor(comparison) | study,
#          rho = 0.5, method = "REML" / "ML"): netmeta's call, but with the multi-arm
#          covariance V (netmeta with contrast-only input passes diag(seTE^2); the
#          tau2 that call gives is stored as tau2_reml_netmeta_diagonal_v, for
#          information). rma.mv's own optimum (tau2_rma_mv_optimum) is ~1e-7 short
#          in tau2 on these data, and nlminb with rel.tol = 1e-12 reports no
#          convergence (optim/nlm do no better), so tau2 is polished to the root of
#          the REML/ML score written out (uniroot, tol 1e-15), and te/se/vcov come
#          from rma.mv with tau2 fixed there; the script stops unless rma.mv's
#          log-likelihood there is >= at its own optimum (both are stored)
#   split  netmeta 3.6-2's back-calculation (netmeta.R, netmeasures, nma_krahn,
#          netsplit's direct.indirect): direct = rma(method = "FE") on the pair's
#          contrasts (vi, or vi + tau2); P = v_net / v_direct with v_net from
#          rma.mv on Krahn's basic contrasts (versus each study's first arm,
#          covariance (v_1i + v_1j - v_ij) / 2 made from the contrasts' variances);
#          TE_direct := 0 when P < sqrt(eps); no indirect when P > 1 or
#          |P - 1| < sqrt(eps) or |P - 1| < tol.direct = 0.0005; no direct when the
#          common-effects P < 0.0005 (netsplit uses it for both models)
#   P-scores: mean of pnorm(-z) over the others
#
# Data: metadat's dat.senn2013 (26 studies, one 3-arm, mean differences of HbA1c from
# arm means and SDs, variance sd^2 / n) and dat.hasselblad1998 (24 studies, two 3-arm,
# log odds ratios; two studies with a zero cell get 0.5 added to every cell of every
# arm, as netmeta's pairwise() does for a study with a zero cell). Contrasts are every
# pair of arms of a study in the data's row order (treat1 = earlier row). A synthetic
# arm-level set (below) has pairs with only indirect evidence and two pairs whose only
# direct study is imprecise: P_direct under 0.0005 and under sqrt(eps).
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

arms_synthetic <- function() {
  data.frame(
    study = c("s1", "s1", "s2", "s2", "s3", "s3", "s4", "s4", "s4", "s5", "s5",
              "s6", "s6", "s7", "s7", "s8", "s8"),
    treat = c("A", "B", "B", "C", "A", "C", "A", "B", "C", "C", "D",
              "B", "D", "A", "D", "A", "B"),
    y = c(0, 0.3, 0.5, 0.1, 0.2, 0.9, 0.1, 0.2, 0.6, 0.4, 1.2,
          0.2, 1.5, 0.3, 2.0, 0.0, 0.8),
    v = c(0.01, 0.012, 0.02, 0.015, 0.03, 0.025, 0.02, 0.018, 0.022, 0.01, 0.012,
          60, 60, 1e7, 1e7, 0.05, 0.04),
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
  y <- c(); X <- NULL; blocks <- list(); blocks0 <- list(); sid <- c(); comp <- c()
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
      comp <- c(comp, paste(r$treat[j], r$treat[1], sep = " vs "))
    }
    blocks[[s]] <- diag(r$v[-1], nrow = k - 1) + r$v[1]
    blocks0[[s]] <- diag(0.5, nrow = k - 1) + 0.5
  }
  list(y = y, X = X, V = bldiag(blocks), V0 = bldiag(blocks0), study = sid,
       comparison = comp)
}

# Krahn et al.'s (nma_krahn) basic contrasts from the contrasts alone: each study's
# arms (sorted) minus its first, covariance (v_1i + v_1j - v_ij) / 2, v = seTE^2 + tau2
krahn <- function(con, trts, tau2) {
  y <- c(); X <- NULL; blocks <- list()
  for (s in unique(con$studlab)) {
    r <- con[con$studlab == s, ]
    arms <- sort(unique(c(r$treat1, r$treat2)))
    v <- function(a, b) {
      sel <- (r$treat1 == a & r$treat2 == b) | (r$treat1 == b & r$treat2 == a)
      r$seTE[sel]^2 + tau2
    }
    te <- function(a, b) {  # a minus b
      sel1 <- r$treat1 == a & r$treat2 == b
      if (any(sel1)) r$TE[sel1] else -r$TE[r$treat1 == b & r$treat2 == a]
    }
    base <- arms[1]; oth <- arms[-1]; k <- length(oth)
    Vs <- matrix(0, k, k)
    for (i in 1:k) for (j in 1:k)
      Vs[i, j] <- if (i == j) v(base, oth[i]) else
        (v(base, oth[i]) + v(base, oth[j]) - v(oth[i], oth[j])) / 2
    for (i in 1:k) {
      y <- c(y, te(oth[i], base))
      row <- setNames(numeric(length(trts)), trts)
      row[oth[i]] <- 1; row[base] <- -1
      X <- rbind(X, row[-1])
    }
    blocks[[s]] <- Vs
  }
  fit <- rma.mv(y, bldiag(blocks), mods = X, intercept = FALSE)
  pairwise_from(fit, trts)$se^2
}

# netmeta's own REML call with contrast-only input: per study the basic contrasts
# against the overall first treatment if the study has it, else its last arm, with a
# diagonal V = seTE^2
reml_netmeta_diagonal <- function(con, trts) {
  y <- c(); X <- NULL; vi <- c(); sid <- c(); comp <- c()
  for (s in unique(con$studlab)) {
    r <- con[con$studlab == s, ]
    arms <- sort(unique(c(r$treat1, r$treat2)))
    ref <- if (trts[1] %in% arms) trts[1] else arms[length(arms)]
    for (i in seq_len(nrow(r))) {
      if (r$treat1[i] != ref && r$treat2[i] != ref) next
      other <- if (r$treat1[i] == ref) r$treat2[i] else r$treat1[i]
      y <- c(y, if (r$treat1[i] == ref) -r$TE[i] else r$TE[i])
      row <- setNames(numeric(length(trts)), trts)
      row[other] <- 1; row[ref] <- -1
      X <- rbind(X, row[-1])
      vi <- c(vi, r$seTE[i]^2)
      sid <- c(sid, s)
      comp <- c(comp, paste(other, ref, sep = " vs "))
    }
  }
  d <- data.frame(comparison = comp, study = sid)
  fit <- rma.mv(y, vi, mods = X, intercept = FALSE, data = d,
                random = ~ factor(comparison) | study, rho = 0.5, method = "REML",
)
  fit$tau2
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

side <- function(con, est, tau2, vnet, vnet_common) {
  trts <- rownames(est$te)
  n <- length(trts)
  eps <- sqrt(.Machine$double.eps)
  rows <- list()
  for (i in 1:(n - 1)) for (j in (i + 1):n) {
    t1 <- trts[i]; t2 <- trts[j]
    sel <- (con$treat1 == t1 & con$treat2 == t2) | (con$treat1 == t2 & con$treat2 == t1)
    if (!any(sel)) next
    yi <- ifelse(con$treat1[sel] == t1, con$TE[sel], -con$TE[sel])
    m <- rma(yi, con$seTE[sel]^2 + tau2, method = "FE")
    m0 <- rma(yi, con$seTE[sel]^2, method = "FE")
    te.d <- as.numeric(coef(m)); se.d <- m$se
    te.n <- est$te[t1, t2]; se.n <- est$se[t1, t2]
    p <- if (n == 2) 1 else vnet[t1, t2] / se.d^2
    p0 <- if (n == 2) 1 else vnet_common[t1, t2] / m0$se^2
    row <- list(treat1 = t1, treat2 = t2, studies = sum(sel), prop_direct = p)
    if (!(abs(p0) < 0.0005)) {
      row$direct_te <- te.d
      row$direct_se <- se.d
    }
    te.d0 <- if (abs(p) < eps) 0 else te.d
    if (!(abs(p - 1) < eps || p > 1 || abs(p - 1) < 0.0005)) {
      row$indirect_te <- (te.n - p * te.d0) / (1 - p)
      row$indirect_se <- sqrt(se.n^2 / (1 - p))
      if (!is.null(row$direct_te)) {
        row$diff_te <- te.d - row$indirect_te
        row$diff_se <- sqrt(se.d^2 + row$indirect_se^2)
        row$diff_p <- 2 * pnorm(-abs(row$diff_te / row$diff_se))
      }
    }
    rows[[length(rows) + 1]] <- row
  }
  rows
}

reml_est <- function(r, trts) {
  te <- r$te; se <- r$se
  dimnames(te) <- dimnames(se) <- list(trts, trts)
  list(te = te, se = se)
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
  # REML and ML: netmeta's rma.mv call with the multi-arm covariance
  lik <- function(method) {
    d <- data.frame(comparison = b$comparison, study = b$study)
    fit_lik <- function(...) rma.mv(b$y, b$V, mods = b$X, intercept = FALSE, data = d,
                                    random = ~ factor(comparison) | study, rho = 0.5,
                                    method = method, ...)
    free <- fit_lik()
    # the score of the (restricted) log-likelihood in tau2, written out
    score <- function(t) {
      Si <- solve(b$V + t * b$V0)
      P <- Si - Si %*% b$X %*% solve(t(b$X) %*% Si %*% b$X) %*% t(b$X) %*% Si
      A <- if (method == "REML") P else Si
      py <- P %*% b$y
      -0.5 * sum(diag(A %*% b$V0)) + 0.5 * as.numeric(t(py) %*% b$V0 %*% py)
    }
    # rma.mv's optimisers stop ~1e-7 short in tau2 (tighter nlminb controls report
    # no convergence); polish its optimum to the root of the score, then refit with
    # tau2 fixed there and check rma.mv's own log-likelihood did not go down
    t <- uniroot(score, c(free$tau2 / 2, free$tau2 * 2), tol = 1e-15)$root
    f <- fit_lik(tau2 = t)
    if (logLik(f) < logLik(free) - 1e-12)
      stop(method, ": rma.mv log-likelihood ", logLik(f), " < ", logLik(free))
    est <- pairwise_from(f, trts)
    list(tau2 = f$tau2, te = unname(est$te), se = unname(est$se),
         vcov = unname(vcov(f)), tau2_rma_mv_optimum = free$tau2,
         loglik_rma_mv_optimum = as.numeric(logLik(free)),
         loglik_polished = as.numeric(logLik(f)), score_rma_mv_optimum =
           score(free$tau2), score_polished = score(t))
  }
  reml <- lik("REML")
  ml <- lik("ML")
  # netmeta's direct-evidence proportions: Krahn's GLS variances
  vnet_c <- krahn(con, trts, 0)
  vnet_r <- krahn(con, trts, tau2)
  vnet_reml <- krahn(con, trts, reml$tau2)
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
    common_vcov = unname(vcov(fit)),
    random_vcov = unname(vcov(fit_r)),
    reml = reml,
    ml = ml,
    tau2_reml_netmeta_diagonal_v = reml_netmeta_diagonal(con, trts),
    q = fit$QE, df = df,
    q_within = q_within, df_within = df_within,
    q_between = fit$QE - q_within, df_between = df - df_within,
    designs = designs,
    tau2 = tau2,
    i2 = max(0, (fit$QE - df) / fit$QE),
    pscores_common_good = as.numeric(pscores(common)),
    pscores_random_bad = as.numeric(pscores(random, good = FALSE)),
    split_common = side(con, common, 0, vnet_c, vnet_c),
    split_random = side(con, random, tau2, vnet_r, vnet_c),
    split_random_reml = side(con, reml_est(reml, trts), reml$tau2, vnet_reml, vnet_c)
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
  hasselblad1998 = analyse(arms_hasselblad(), "dat.hasselblad1998 (log odds ratio)"),
  synthetic = analyse(arms_synthetic(), "synthetic arms (weak direct evidence)")
)
writeLines(toJSON(exact(out), auto_unbox = TRUE, pretty = TRUE, json_verbatim = TRUE),
           "tests/reference/nma_reference.json")
