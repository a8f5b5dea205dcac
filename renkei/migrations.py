"""The database schema is managed by Alembic (migrations/); this brings it up to date."""

from alembic import command
from alembic.config import Config

from renkei.settings import ROOT


def alembic_config(connection=None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(ROOT / "migrations"))
    cfg.attributes["connection"] = connection
    return cfg


def upgrade_schema(engine):
    """Bring the schema to the newest migration (no-op when it is current)."""
    with engine.begin() as conn:
        command.upgrade(alembic_config(conn), "head")
