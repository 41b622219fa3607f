"""The monitor's window checks (drift, safety, fairness, ...): interface, factory, drivers."""
