"""The REST API under /api/v1 (docs/API.md): a door onto the core. Each route module
translates HTTP into calls of renkei's services and back; api/pipeline.py is the one
request pipeline they all go through."""

from api import (  # noqa: F401  (routes register on import)
    access_log,
    attachments,
    auth,
    breakglass,
    directory,
    notes,
    observations,
    openapi,
    patients,
    push,
    record,
)
from api.pipeline import ROUTES, bp

__all__ = ["bp", "ROUTES"]
