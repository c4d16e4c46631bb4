"""The deployment runtime: what runs on the driver (and, as Spark expressions, the executors). Shipped with --py-files; imports nothing from the tooling."""
