"""Training and evaluation of the sample model."""
