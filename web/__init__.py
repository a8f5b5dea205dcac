"""Server-rendered pages (templates/): a door onto the core, like the API. Pages call
renkei's services and render what they return (web/pages.py); web/pipeline.py is the
request pipeline every page goes through."""

from web import pages  # noqa: F401  (routes register on import)
from web.pipeline import bp, init_app

__all__ = ["bp", "init_app"]
