"""The one exception hierarchy of pht.

Library code raises these; only the CLI turns them into a one-line message and an exit
code (``-v`` shows the traceback). Every message says what went wrong *and* what to do.

::

    PhtError
    ├── ConfigError          network.yaml, study.yaml, policy or manifest files
    ├── DataError            a dataset: missing file, missing column, wrong type, empty group
    ├── PolicyError          a station's policy forbids the request
    │   ├── DisclosureError  an output would disclose too much (small cells, rows, dof)
    │   └── QuorumError      fewer stations took part than the study's min_stations
    ├── TrustError           signatures, keys, digests
    ├── AuditError           the audit log is damaged or inconsistent
    │   └── AuditRollbackError  (pht.station.audit) a log is missing or rolled back
    ├── ExecutorError        a train could not be run, crashed or timed out
    ├── ConvergenceError     an iterative fit did not converge
    ├── ReviewPending        stations hold the output for manual review
    └── PartialResult        a result was written from fewer stations than requested

Exit codes of the ``pht`` command: 0 ok, 1 any other pht error, 2 configuration,
3 data, 4 policy (no station took part, or fewer than ``min_stations``), 5 trust,
6 audit, 7 executor, 8 convergence, 9 held for review, 10 a partial result was
written (quorum met, but not every requested station took part; ``pht demo`` still
exits 0), 130 interrupted.

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


class QuorumError(PolicyError):
    """Fewer stations took part than the study's ``min_stations``: nothing is written."""


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


class PartialResult(PhtError):
    """A result was written, but from fewer stations than the study requested.

    Not raised by the library (a partial result is a result: ``result["partial"]``
    says who is missing and why); the CLI exits with this code after writing it.
    """

    exit_code = 10


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


class ReferenceWarning(PhtWarning):
    """A reference level the study named does not occur: the first level is used.

    Said after the stations released their answers (the levels are known only then),
    so the audited run is kept with the default reference rather than lost.
    """


class CompanionWarning(PhtWarning):
    """The companion train of a study gave no result; the main result stands."""
