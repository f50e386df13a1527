"""Offline training of the reference Keras classifiers and their export to the model store."""
