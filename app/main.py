"""The server's entry: `create_app(settings)`, the FastAPI app (app/api/app.py) that `parley serve` runs."""

from app.api.app import create_app

__all__ = ["create_app"]
