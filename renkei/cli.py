"""`flask --app wsgi <command>`: schema, administrators, keys, backups, the access log,
demo data. Commands are plain click commands; `init_app` adds them to the app."""

import json
from datetime import timedelta
from pathlib import Path

import click
from flask import current_app
from flask.cli import with_appcontext

from models import utcnow
from renkei import demo
from renkei.access_log import archive, entries, sealer, verification
from renkei.common import backup, db, vault, work
from renkei.common.problems import Problem
from renkei.common.timefmt import iso, parse_iso
from renkei.migrations import upgrade_schema
from renkei.patients import appointments, registry
from renkei.people import confirmations, directory, resets

# 5 years: how long 診療録 must be kept (医師法第24条). The access log is the evidence
# of who read a record, so it is not dropped sooner than the record itself.
RETENTION_DAYS = 5 * 365


def _settings():
    return current_app.config["RENKEI"]


@click.command("init-db")
@with_appcontext
def init_db():
    """Create or upgrade the schema, then index the names of patients registered
    before name search by prefix existed."""
    upgrade_schema(current_app.extensions["renkei.engine"])
    indexed = registry.index_missing_names()
    work.current().commit()
    click.echo(f"schema is current; {len(indexed)} patients' names indexed")


@click.command("create-admin")
@click.option("--login", required=True)
@click.option("--password", required=True)
@click.option("--display-name", default=None)
@with_appcontext
def create_admin(login, password, display_name):
    """Create an administrator; prints {"id", "totp_secret"} as one JSON line."""
    if directory.login_taken(login):
        raise click.UsageError(f"the login {login} exists")
    try:
        result = directory.create_admin(login, password, display_name)
    except Problem as refused:
        raise click.UsageError("; ".join(refused.errors["password"]))
    db.session.commit()
    click.echo(json.dumps(result))


@click.command("reset-admin-totp")
@click.option("--login", required=True)
@with_appcontext
def reset_admin_totp(login):
    """Give an administrator a new second factor; prints {"id", "totp_secret"}."""
    result = directory.new_admin_totp(login)
    if result is None:
        raise click.UsageError(f"no administrator {login}")
    unit = work.current()
    unit.add_entry("directory.totp_reset", "ok", detail="user=" + result["id"])
    unit.commit()
    click.echo(json.dumps(result))


@click.command("reset-access")
@click.option("--login", required=True)
@with_appcontext
def reset_access(login):
    """Reset a person's access on the server (one administrator, or an administrator's
    own access): prints {"recovery_code", "expires_at"} (+ "totp_secret" for an administrator)."""
    result = resets.on_the_server(login)
    if result is None:
        raise click.UsageError(f"no user {login}")
    unit = work.current()
    unit.add_entry("directory.reset_server", "ok", detail=f"user={result['user_id']};reset={result['id']}")
    unit.commit()
    click.echo(json.dumps({k: iso(v) if k == "expires_at" else v for k, v in result.items()}))


@click.command("rotate-master-key")
@with_appcontext
def rotate_master_key():
    """Rewrap every data key under RENKEI_MASTER_KEY (old key in RENKEI_MASTER_KEY_PREVIOUS)."""
    click.echo(json.dumps({"rewrapped": vault.rotate_master_key(), "master_key_id": vault.keyring().current_id}))


@click.command("backup")
@click.option("--out", required=True, type=click.Path(dir_okay=False))
@with_appcontext
def backup_cmd(out):
    """Write an encrypted backup of the database (pg_dump or SQLite copy)."""
    s = _settings()
    click.echo(json.dumps({"file": out, "bytes": backup.backup(s.database_url, s.master_key, Path(out))}))


@click.command("restore")
@click.option("--src", required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--yes", is_flag=True, help="replace the contents of RENKEI_DATABASE_URL")
@with_appcontext
def restore_cmd(src, yes):
    """Restore an encrypted backup into RENKEI_DATABASE_URL (replacing its contents)."""
    if not yes:
        raise click.UsageError("restoring replaces the database's contents; add --yes")
    s = _settings()
    current_app.extensions["renkei.engine"].dispose()
    backup.restore(s.database_url, s.master_key, Path(src))
    click.echo(json.dumps({"restored": src}))


@click.command("audit-checkpoint")
@with_appcontext
def audit_checkpoint():
    """Print the newest signed tree head (a C2SP signed note): keep it outside the system."""
    note = sealer.checkpoint()["checkpoint"]
    db.session.commit()
    click.echo(note, nl=False)


@click.command("audit-seal")
@with_appcontext
def audit_seal():
    """Seal the entries waiting now (the servers do this every half second)."""
    click.echo(json.dumps({"sealed": sealer.seal_all(), **verification.unsealed()}))


@click.command("audit-verify")
@click.option(
    "--checkpoint",
    "checkpoint_file",
    type=click.Path(exists=True, dir_okay=False),
    help="a signed tree head kept elsewhere (from audit-checkpoint)",
)
@click.option(
    "--archive",
    "archive_file",
    type=click.Path(exists=True, dir_okay=False),
    help="verify an archive file instead of the live log",
)
@with_appcontext
def audit_verify_cmd(checkpoint_file, archive_file):
    """Recompute the access log's tree and check it against every signed head in the sink
    (and a head kept elsewhere): edits, removals, reordering and truncation are found."""
    note = Path(checkpoint_file).read_text() if checkpoint_file else None
    if archive_file:
        try:
            result = archive.check_archive(*archive.read_archive(Path(archive_file), _settings().master_key), note)
        except archive.ArchiveError as exc:
            result = {"ok": False, "reason": str(exc)}
    else:
        result = verification.verify_checkpoint(note) if note else verification.verify()
    click.echo(json.dumps(result, ensure_ascii=False))
    raise SystemExit(0 if result["ok"] else 1)


@click.command("audit-archive")
@click.option("--out", required=True, type=click.Path(dir_okay=False))
@click.option("--older-than-days", default=RETENTION_DAYS, show_default=True, type=click.IntRange(min=1))
@click.option("--before", default=None, help="ISO 8601 instead (without an offset: UTC), e.g. 2021-04-01T00:00+09:00")
@with_appcontext
def audit_archive_cmd(out, older_than_days, before):
    """Move access-log entries older than the retention period into a sealed archive file."""
    try:
        cutoff = parse_iso(before) if before else utcnow() - timedelta(days=older_than_days)
    except ValueError:
        raise click.BadParameter("not an ISO 8601 time", param_hint="--before")
    try:
        result = archive.archive(cutoff, Path(out), _settings().master_key)
    except archive.ArchiveError as exc:
        raise click.ClickException(str(exc))
    click.echo(json.dumps(result))


@click.command("audit-export")
@click.option("--archive", "archive_file", required=True, type=click.Path(exists=True, dir_okay=False))
@with_appcontext
def audit_export(archive_file):
    """Print a verified archive file as CSV (the live log: GET /api/v1/audit/export.csv)."""
    try:
        rows, end = archive.read_archive(Path(archive_file), _settings().master_key)
        check = archive.check_archive(rows, end)
        if not check["ok"]:
            raise archive.ArchiveError(check["reason"])
    except archive.ArchiveError as exc:
        raise click.ClickException(str(exc))
    for line in entries.csv_lines(rows):
        click.echo(line, nl=False)


@click.command("confirm-user")
@click.option("--login", required=True)
@with_appcontext
def confirm_user(login):
    """Confirm an account an administrator created or changed, as the second person (a
    deployment with one administrator). Prints the account as one JSON line."""
    try:
        user = confirmations.confirm_user_on_server(login)
    except Problem as refused:
        raise click.UsageError(refused.detail)
    if user is None:
        raise click.UsageError(f"no user {login}")
    unit = work.current()
    unit.add_entry("directory.confirm_server", "ok", detail=f"user={user.id}")
    unit.commit()
    click.echo(json.dumps({"id": user.id, "login": user.login, "confirmed": True}))


@click.command("confirm-appointment")
@click.option("--patient", "patient_id", required=True, help="the patient's id")
@click.option("--login", required=True, help="the appointee's login")
@with_appcontext
def confirm_appointment(patient_id, login):
    """Confirm an administrator's pending appointment to a team, as the second person."""
    try:
        member = appointments.confirm_appointment_on_server(patient_id, login)
    except Problem as refused:
        raise click.UsageError(refused.detail)
    if member is None:
        raise click.UsageError(f"no user {login}")
    unit = work.current()
    unit.add_entry("team.confirm_server", "ok", patient_id=member.patient_id, detail=f"user={member.user_id}")
    unit.commit()
    click.echo(json.dumps({"patient_id": member.patient_id, "user_id": member.user_id, "role": member.role}))


@click.command("seed-demo")
@with_appcontext
def seed_demo():
    """Load the demo organisations, users and patients into an empty database."""
    click.echo(demo.seed())


COMMANDS = (
    init_db,
    create_admin,
    reset_admin_totp,
    reset_access,
    rotate_master_key,
    backup_cmd,
    restore_cmd,
    audit_checkpoint,
    audit_seal,
    audit_verify_cmd,
    audit_archive_cmd,
    audit_export,
    confirm_user,
    confirm_appointment,
    seed_demo,
)


def init_app(app):
    for command in COMMANDS:
        app.cli.add_command(command)
