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


# 5 years: how long 診療録 must be kept (医師法第24条). The access log is the evidence
# of who read a record, so it is not dropped sooner than the record itself.
RETENTION_DAYS = 5 * 365


def _master_key() -> bytes:
    return current_app.config["RENKEI"].master_key


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

    @app.cli.command("backup")
    @click.option("--out", required=True, type=click.Path(dir_okay=False))
    def backup_cmd(out):
        """Write an encrypted backup of the database (pg_dump or SQLite copy)."""
        from pathlib import Path
        from renkei import backup
        s = current_app.config["RENKEI"]
        click.echo(json.dumps({"file": out, "bytes": backup.backup(s.database_url, s.master_key, Path(out))}))

    @app.cli.command("restore")
    @click.option("--src", required=True, type=click.Path(exists=True, dir_okay=False))
    @click.option("--yes", is_flag=True, help="replace the contents of RENKEI_DATABASE_URL")
    def restore_cmd(src, yes):
        """Restore an encrypted backup into RENKEI_DATABASE_URL (replacing its contents)."""
        from pathlib import Path
        from renkei import backup
        if not yes:
            raise click.UsageError("restoring replaces the database's contents; add --yes")
        s = current_app.config["RENKEI"]
        current_app.extensions["renkei.engine"].dispose()
        backup.restore(s.database_url, s.master_key, Path(src))
        click.echo(json.dumps({"restored": src}))

    @app.cli.command("audit-checkpoint")
    def audit_checkpoint():
        """Print a signed checkpoint of the audit chain's head (keep it outside the system)."""
        from renkei import audit_archive
        cp = audit_archive.checkpoint()
        db.session.commit()
        click.echo(json.dumps(cp))

    @app.cli.command("audit-verify")
    @click.option("--checkpoint", "checkpoint_file", type=click.Path(exists=True, dir_okay=False))
    @click.option("--archive", "archive_file", type=click.Path(exists=True, dir_okay=False),
                  help="verify an archive file instead of the live log")
    def audit_verify(checkpoint_file, archive_file):
        """Verify the chain, and that it still holds a saved checkpoint (detects truncation)."""
        from pathlib import Path
        from renkei import audit, audit_archive
        cp = json.load(open(checkpoint_file)) if checkpoint_file else None
        if archive_file:
            try:
                result = audit_archive.check_archive(*audit_archive.read_archive(Path(archive_file), _master_key()), cp)
            except audit_archive.ArchiveError as exc:
                result = {"ok": False, "reason": str(exc)}
        else:
            result = audit_archive.verify_checkpoint(cp) if cp else audit.verify()
        click.echo(json.dumps(result, ensure_ascii=False))
        raise SystemExit(0 if result["ok"] else 1)

    @app.cli.command("audit-archive")
    @click.option("--out", required=True, type=click.Path(dir_okay=False))
    @click.option("--older-than-days", default=RETENTION_DAYS, show_default=True, type=click.IntRange(min=1))
    @click.option("--before", default=None, help="ISO 8601 instead (without an offset: UTC), e.g. 2021-04-01T00:00+09:00")
    def audit_archive_cmd(out, older_than_days, before):
        """Move access-log entries older than the retention period into a sealed archive file."""
        from datetime import timedelta
        from pathlib import Path
        from models import utcnow
        from renkei import audit_archive
        from renkei.timefmt import parse_iso
        try:
            cutoff = parse_iso(before) if before else utcnow() - timedelta(days=older_than_days)
        except ValueError:
            raise click.BadParameter("not an ISO 8601 time", param_hint="--before")
        try:
            result = audit_archive.archive(cutoff, Path(out), _master_key())
        except audit_archive.ArchiveError as exc:
            raise click.ClickException(str(exc))
        click.echo(json.dumps(result))

    @app.cli.command("audit-export")
    @click.option("--archive", "archive_file", required=True, type=click.Path(exists=True, dir_okay=False))
    def audit_export(archive_file):
        """Print a verified archive file as CSV (the live log: GET /api/v1/audit/export.csv)."""
        from pathlib import Path
        from renkei import audit, audit_archive
        try:
            entries, end = audit_archive.read_archive(Path(archive_file), _master_key())
            check = audit_archive.check_archive(entries, end)
            if not check["ok"]:
                raise audit_archive.ArchiveError(check["reason"])
        except audit_archive.ArchiveError as exc:
            raise click.ClickException(str(exc))
        for line in audit.csv_lines(entries):
            click.echo(line, nl=False)

    @app.cli.command("seed-demo")
    def seed_demo():
        """Load the demo organisations, users and patients into an empty database."""
        from renkei import demo
        click.echo(demo.seed())
