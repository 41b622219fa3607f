"""Monitors (drift, safety, pii, grounding, fairness): one interface (base.py), built by name
from a tiny registry (factory.py), one driver module each. Pure: no IO, the clock passed in."""
