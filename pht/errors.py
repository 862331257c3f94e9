"""The one exception hierarchy of pht.

Library code raises these; only the CLI turns them into a one-line message and an exit
code (``-v`` shows the traceback). Every message says what went wrong *and* what to do.

::

    PhtError
    ├── ConfigError          network.yaml, study.yaml, policy or manifest files
    ├── DataError            a dataset: missing file, missing column, wrong type, empty group
    ├── PolicyError          a station's policy forbids the request
    │   └── DisclosureError  an output would disclose too much (small cells, rows, dof)
    ├── TrustError           signatures, keys, digests
    ├── AuditError           the audit log is damaged or inconsistent
    │   └── AuditRollbackError  (pht.station.audit) a log is missing or rolled back
    ├── ExecutorError        a train could not be run, crashed or timed out
    └── ConvergenceError     an iterative fit did not converge

Statistical caveats are warnings under :class:`PhtWarning`.
"""

from __future__ import annotations


class PhtError(Exception):
    """Base of every error pht raises on purpose."""

    exit_code = 1


class ConfigError(PhtError):
    """A configuration file is malformed, incomplete or refers to something unknown."""

    exit_code = 2


class DataError(PhtError):
    """A dataset cannot be used as the study asks (missing file, column or type)."""

    exit_code = 3


class PolicyError(PhtError):
    """A station's policy does not allow the request."""

    exit_code = 4


class DisclosureError(PolicyError):
    """An output would disclose too much: small cells, rows, too few degrees of freedom."""


class TrustError(PhtError):
    """A signature, key or digest does not verify."""

    exit_code = 5


class AuditError(PhtError):
    """An audit log is damaged, truncated or inconsistent with a checkpoint."""

    exit_code = 6


class ExecutorError(PhtError):
    """A train could not be started, crashed, broke its contract or timed out."""

    exit_code = 7


class ConvergenceError(PhtError):
    """An iterative estimation did not converge."""

    exit_code = 8


class ReviewPending(PhtError):
    """Stations hold the output for a person's review; collect it after approval."""

    exit_code = 9


class PhtWarning(UserWarning):
    """Base of pht's warnings about statistical caveats."""


class SingleStationLevelWarning(PhtWarning):
    """A covariate level occurs at one station only: its effect rests on that station."""


class PopulationWarning(PhtWarning):
    """Stations with patients were left out, so the estimate describes fewer patients."""


class NotEstimableWarning(PhtWarning):
    """An estimate asked for cannot be given (e.g. survival beyond the follow-up)."""


class SuppressionWarning(PhtWarning):
    """Cells suppressed at a station leave part of an answer unknown."""


class CompanionWarning(PhtWarning):
    """The companion train of a study gave no result; the main result stands."""
