"""Tooling around the runtime, never shipped to a cluster: the local Kafka broker, a standalone Spark cluster, jar downloads, processes, spec documents, the demo."""
