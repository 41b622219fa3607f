"""Quality monitoring over closed QualityWindows: references, drift, safety and fairness
checks, and the book of open alerts. Pure: no IO, the agent (streams/agents/monitor.py) loads
what the store holds and publishes what comes out."""
