"""The worker's agents: declared table sinks (sinks.py) and the window aggregation
(windows.py), sharing one way to batch, publish and ack (delivery.py)."""
