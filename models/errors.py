"""The base of every error a user is meant to read; curation.errors builds its named errors on it."""


class StudioError(Exception):
    """Base class for every error a user is meant to read."""


class ModelError(StudioError):
    """A model or its inference server cannot be used: missing weights, a server that will not start or died."""
