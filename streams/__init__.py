"""The metrics worker (faust): `python -m streams`. See streams/worker.py."""

# The service name on spans, metrics, log lines and dead letters.
SERVICE = "streams"
