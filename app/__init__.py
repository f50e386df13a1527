"""REST inference service for the image classifiers of the model store."""
