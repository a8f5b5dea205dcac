"""Server-rendered pages (templates/)."""
from flask import Blueprint

bp = Blueprint("web", __name__)


def init_app(app):
    pass
