"""Tooling around the runtime, never shipped: local broker, standalone cluster, jars, processes, specs, demo."""
