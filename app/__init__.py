"""REST inference service for the image classifiers of the model store."""

from importlib import metadata

DISTRIBUTION = "image-classifier-service"
"""The project's name as installed (`pyproject.toml`), and the server's name in `/v2`."""

__version__ = metadata.version(DISTRIBUTION)
"""The installed distribution's version (`pyproject.toml`): the API's, `/v2`'s and `build_info`'s."""
