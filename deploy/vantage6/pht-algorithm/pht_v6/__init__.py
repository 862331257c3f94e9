"""The pht station as a vantage6 algorithm (``PKG_NAME=pht_v6``).

vantage6's wrapper calls ``getattr(pht_v6, task["method"])(**task["kwargs"])``, so
whoever can create a task at this node can call any attribute of this package. It
therefore holds exactly the five task functions and nothing else (no imports, no
helpers); the work is in :mod:`pht_v6._node`. Each function returns the station's
reply as JSON or ``{"pht_node_error": CODE}``.
"""


def station(envelope=None):  # noqa: ANN001, ANN201
    """Answer one signed single-round (or describe) request."""
    from pht_v6._node import station as run

    return run(envelope)


def session_host():  # noqa: ANN201
    """Serve the node's session spool until no session is open."""
    from pht_v6._node import session_host as run

    return run()


def session_open(envelope=None):  # noqa: ANN001, ANN201
    """Open an iterative session; round 0's reply."""
    from pht_v6._node import session_open as run

    return run(envelope)


def session_round(session=None, sealed=None, signature=None):  # noqa: ANN001, ANN201
    """One sealed, requester-signed round message of an open session."""
    from pht_v6._node import session_round as run

    return run(session, sealed, signature)


def session_close(session=None, signature=None):  # noqa: ANN001, ANN201
    """End an open session (signed by its requester)."""
    from pht_v6._node import session_close as run

    return run(session, signature)
