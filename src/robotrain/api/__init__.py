"""The HTTP layer: `create_app` builds the FastAPI application."""
