"""Streaming deployment of a Spark ML model: Kafka in, scored predictions out."""
