"""The requester side: study and network files, engines, pooling, results and reports."""
