"""`flask --app wsgi <command>`: schema, administrators, keys, demo data."""
import json

import click
from flask import current_app
from sqlalchemy import select

from renkei import db
from renkei.settings import ROOT


def alembic_config(connection=None):
    from alembic.config import Config
    cfg = Config()
    cfg.set_main_option("script_location", str(ROOT / "migrations"))
    cfg.attributes["connection"] = connection
    return cfg


def upgrade_schema(engine):
    """Bring the schema to the newest migration (no-op when it is current)."""
    from alembic import command
    with engine.begin() as conn:
        command.upgrade(alembic_config(conn), "head")


def create_admin(login: str, password: str, display_name: str | None = None) -> dict:
    from models import Organization, User
    from renkei import auth
    org = db.session.execute(select(Organization).where(Organization.kind == "other",
                                                        Organization.name == "Renkei 管理")).scalar()
    if org is None:
        org = Organization(name="Renkei 管理", kind="other")
        db.session.add(org)
        db.session.flush()
    user = User(login=login, password_hash=auth.hash_password(password),
                display_name=display_name or login, organization_id=org.id,
                profession="other", is_admin=True)
    db.session.add(user)
    db.session.flush()
    secret = auth.new_totp_secret(user)
    user.totp_enabled = True  # administrators always sign in with a second factor
    return {"id": user.id, "totp_secret": secret}


def register(app):
    @app.cli.command("init-db")
    def init_db():
        """Create or upgrade the schema."""
        upgrade_schema(current_app.extensions["renkei.engine"])
        click.echo("schema is current")

    @app.cli.command("create-admin")
    @click.option("--login", required=True)
    @click.option("--password", required=True)
    @click.option("--display-name", default=None)
    def create_admin_cmd(login, password, display_name):
        """Create an administrator; prints {"id", "totp_secret"} as one JSON line."""
        from models import User
        if len(password) < 10:
            raise click.UsageError("the password needs at least 10 characters")
        if db.session.execute(select(User.id).where(User.login == login)).first():
            raise click.UsageError(f"the login {login} exists")
        result = create_admin(login, password, display_name)
        db.session.commit()
        click.echo(json.dumps(result))

    @app.cli.command("rotate-master-key")
    def rotate_master_key():
        """Rewrap every data key under RENKEI_MASTER_KEY (old key in RENKEI_MASTER_KEY_PREVIOUS)."""
        from renkei import vault
        click.echo(json.dumps({"rewrapped": vault.rotate_master_key(),
                               "master_key_id": vault.keyring().current_id}))

    @app.cli.command("seed-demo")
    def seed_demo():
        """Load the demo organisations, users and patients into an empty database."""
        from renkei import demo
        click.echo(demo.seed())
