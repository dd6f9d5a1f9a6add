"""The benchmark (``python -m partypool.bench``), kept apart from the server."""
