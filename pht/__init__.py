"""pht: a Personal Health Train framework for real-world evidence on expensive medicines.

Analyses ("trains") travel to data stations, run there under each station's policy and
return only aggregates; the orchestrator pools them into answers that equal the same
analysis on the pooled rows.
"""

__version__ = "0.1.0"
