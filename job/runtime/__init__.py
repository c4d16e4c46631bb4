"""The deployment runtime: what runs on the driver, shipped with --py-files. Imports nothing from the tooling."""
