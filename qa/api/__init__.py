"""The HTTP API: `create_app` builds a FastAPI app whose lifespan loads the model and the index once."""

from qa.api.app import create_app

__all__ = ["create_app"]
