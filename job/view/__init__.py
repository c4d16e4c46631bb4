"""A live web view of a running deployment: label shares, latest records, dead letters and health, from the topics.

Tooling, not runtime: nothing in the cluster runtime imports this package. Its few imports of the runtime
(spec loading, Kafka client config, the state folder) are gathered in `job/view/runtime.py`.
"""
