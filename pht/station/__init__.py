"""The station runtime: policy, trust checks, executors, output guard, audit log.

Public surface: :class:`Station`, :class:`StationConfig`, :func:`load_policy`,
:class:`Policy`, :class:`ProcessExecutor`. Nothing here imports the orchestrator.
"""

from pht.station.executors import Executor, Job, JobResult, ProcessExecutor
from pht.station.policy import DEFAULT_POLICY, Policy, load_policy
from pht.station.sessions import StationSession
from pht.station.station import Station, StationConfig

__all__ = [
    "DEFAULT_POLICY",
    "Executor",
    "Job",
    "JobResult",
    "Policy",
    "ProcessExecutor",
    "Station",
    "StationConfig",
    "StationSession",
    "load_policy",
]
