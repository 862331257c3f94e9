"""Pure statistics: station-side ``local_*`` kernels and orchestrator-side ``pool_*``.

Nothing here reads files, environment variables or JSON, prints or configures logging.
Inputs are arrays or typed aggregates; outputs are frozen dataclasses.
"""
