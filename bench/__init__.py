"""Benchmarks of the stream deployment (`make bench`): throughput, latency, static scoring and start-up."""
