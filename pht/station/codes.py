"""Fixed, data-free refusal codes: the only reasons a station gives.

A reason never carries a value from the data, a group label, an identifier, a row, a
number chosen by a train or a path: only one of these fixed texts (what happened and
what the requester can do). Details that help the station's operator go to the
station's own log, never to the reply; a train's own reason is replaced by a code.
"""

from __future__ import annotations

from enum import Enum


class Code(Enum):
    """A refusal code and its fixed text."""

    MALFORMED = (
        "the request envelope or a signed field is malformed or of the wrong type"
    )
    REJECTED = (
        "the request is not accepted (malformed, or a key this station does not trust)"
    )
    SIGNATURE = "the request is unsigned or its signature does not verify"
    EXPIRED = "the request has expired or is not yet valid; send a new one"
    ELSEWHERE = "the request is not addressed to this station"
    IDENTITY = "the request's user, role or organisation does not match its key's entry"
    REPLAYED = "request rejected: replayed (this request id or nonce was seen before)"
    DATASET = "this station holds no such dataset, or its policy has no entry for it"
    PURPOSE = "the purpose is not allowed by this station's policy"
    REQUESTER = "the requester's organisation or role is not allowed by this station"
    TRAIN = "the train, its version, signer or digest is not allowed at this station"
    CONTRACT = "the train's manifest differs from what this station computes for it"
    PARAMETERS = "the parameters do not fit the train's manifest"
    COLUMN = "a column is missing, of the wrong kind, or not allowed in that role"
    SITE = "results by care site need show_station_name: true in the station's policy"
    CLASS = "the output's disclosure class is not allowed by this station's policy"
    REVIEW_ITERATIVE = "manual review cannot hold the rounds of an iterative train"
    BUDGET = "the query budget for this dataset is spent; try again next period"
    SANDBOX = (
        "this machine cannot provide the process sandbox and the policy does not "
        "accept that risk (unsafe_process_sandbox)"
    )
    SMALL_POPULATION = "the dataset has too few complete patients for this analysis"
    SMALL_CELL = "a group or level holds fewer patients than the minimum cell size"
    GRID = "no time grid gives every released cell the minimum cell size"
    FEW_EVENTS = (
        "fewer events than the minimum cell size at this station; its patients are "
        "not in the analysis"
    )
    DOF = "fewer than 10 patients per estimated parameter at this station"
    ROUND = "the round message does not fit the train's declared input"
    DESIGN = "the design does not fit this station's own description of its data"
    PATH = "the coefficients are not on the agreed Newton-Raphson path"
    ROUNDS = "the session reached the station's cap on rounds"
    SESSION = "the session is closed or not in a state for this message"
    GUARD = "the train's output broke the output schema or a disclosure rule"
    TRAIN_REFUSED = "the train refused: the data cannot be released as asked"
    TRAIN_FAILED = "the train failed; the details stay in the station's log"
    TIMEOUT = "the train timed out"
    EXECUTOR = "the train could not be run by this station's executor"
    DATA = "the dataset cannot be read as the train needs; ask the station's operator"
    SOURCE = (
        "the station's database did not answer in time; try again later or ask the "
        "station's operator"
    )
    DATA_CHANGED = (
        "the dataset changed by fewer than the minimum cell size of patients since "
        "its last release; it is released again once enough patients joined or left"
    )
    INTERNAL = "the station could not process the request; ask its operator"
    REVIEW_PENDING = "the output waits for manual review at the station"
    REVIEW_REJECTED = "rejected at manual review"

    @property
    def reason(self) -> str:
        """``code: text`` as it appears in replies and the audit log."""
        return f"{self.name.lower().replace('_', '-')}: {self.value}"

    @property
    def acts(self) -> str:
        """Whose side must act: :data:`ANALYST`, :data:`OPERATOR` or :data:`POLICY`."""
        return _ACTS[self]


ANALYST = "analyst"
"""The request can be changed: parameters, columns, dataset, role, or send it again."""
OPERATOR = "station operator"
"""The station's data, machine, keyring or software must be fixed by its operator."""
POLICY = "none (policy)"
"""The station's policy decided; nobody has to fix anything (leave the station out)."""

SIDES = (ANALYST, OPERATOR, POLICY)

_ACTS: dict[Code, str] = {
    Code.MALFORMED: ANALYST,
    Code.REJECTED: OPERATOR,  # the station's keyring does not hold the key
    Code.SIGNATURE: ANALYST,
    Code.EXPIRED: ANALYST,
    Code.ELSEWHERE: ANALYST,
    Code.IDENTITY: ANALYST,
    Code.REPLAYED: ANALYST,
    Code.DATASET: ANALYST,
    Code.PURPOSE: POLICY,
    Code.REQUESTER: POLICY,
    Code.TRAIN: POLICY,
    Code.CONTRACT: OPERATOR,  # the station's plugin differs from the signed train
    Code.PARAMETERS: ANALYST,
    Code.COLUMN: ANALYST,
    Code.SITE: POLICY,
    Code.CLASS: POLICY,
    Code.REVIEW_ITERATIVE: POLICY,
    Code.BUDGET: POLICY,
    Code.SANDBOX: OPERATOR,
    Code.SMALL_POPULATION: POLICY,
    Code.SMALL_CELL: POLICY,
    Code.GRID: POLICY,
    Code.FEW_EVENTS: POLICY,
    Code.DOF: POLICY,
    Code.ROUND: ANALYST,
    Code.DESIGN: ANALYST,
    Code.PATH: ANALYST,
    Code.ROUNDS: POLICY,
    Code.SESSION: ANALYST,
    Code.GUARD: POLICY,
    Code.TRAIN_REFUSED: POLICY,
    Code.TRAIN_FAILED: OPERATOR,
    Code.TIMEOUT: OPERATOR,
    Code.EXECUTOR: OPERATOR,
    Code.DATA: OPERATOR,
    Code.SOURCE: OPERATOR,
    Code.DATA_CHANGED: POLICY,
    Code.INTERNAL: OPERATOR,
    Code.REVIEW_PENDING: OPERATOR,  # a person at the station must review it
    Code.REVIEW_REJECTED: POLICY,
}

_BY_PREFIX = {code.name.lower().replace("_", "-"): code for code in Code}


def code_of(reason: str | None) -> Code | None:
    """The :class:`Code` a reason starts with (``code: text``), or None."""
    prefix = (reason or "").split(":", 1)[0].strip()
    return _BY_PREFIX.get(prefix)


def acts(reason: str | None) -> str:
    """Whose side must act on a station's reason; unknown reasons: the operator's.

    >>> acts(Code.GRID.reason), acts("text the station made up")
    ('none (policy)', 'station operator')
    """
    code = code_of(reason)
    return OPERATOR if code is None else code.acts
