"""Encrypted backups (pg_dump / SQLite online backup) and restore.

A backup file is AES-256-GCM ciphertext under a key derived from the master key
(HKDF, info "renkei backup v1"), so a copied backup is useless without the key
that also guards the data keys. Restore needs the same master key."""
import os
import sqlite3
import subprocess
import tempfile
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy.engine import make_url

from renkei import crypto

MAGIC = b"RENKEI-BACKUP-1\n"
PG_BIN = os.environ.get("PGBIN", "/usr/lib/postgresql/15/bin")


def file_key(master: bytes, purpose: str) -> bytes:
    """The key for files that leave the database (backups, audit archives)."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=f"renkei {purpose} v1".encode()).derive(master)


def _pg_args(url: str) -> tuple[list[str], dict]:
    u = make_url(url)
    env = os.environ | ({"PGPASSWORD": u.password} if u.password else {})
    return ["-h", u.host or "127.0.0.1", "-p", str(u.port or 5432), "-U", u.username or "postgres",
            "-d", u.database], env


def _tool(name: str) -> str:
    local = Path(PG_BIN) / name
    return str(local) if local.exists() else name


def dump(url: str) -> bytes:
    if url.startswith("sqlite"):
        src = make_url(url).database
        with tempfile.TemporaryDirectory() as tmp:
            out = os.path.join(tmp, "copy.db")
            with sqlite3.connect(src) as a, sqlite3.connect(out) as b:
                a.backup(b)  # consistent online copy
            return Path(out).read_bytes()
    args, env = _pg_args(url)
    return subprocess.run([_tool("pg_dump"), "-Fc", *args], env=env, check=True, capture_output=True).stdout


def restore_raw(url: str, raw: bytes):
    if url.startswith("sqlite"):
        Path(make_url(url).database).write_bytes(raw)
        return
    args, env = _pg_args(url)
    subprocess.run([_tool("pg_restore"), "--clean", "--if-exists", "--no-owner", *args],
                   input=raw, env=env, check=True, capture_output=True)


def backup(url: str, master: bytes, out: Path) -> int:
    sealed = crypto.seal(file_key(master, "backup"), dump(url), "backup")
    out.write_bytes(MAGIC + sealed)
    os.chmod(out, 0o600)
    return out.stat().st_size


def restore(url: str, master: bytes, src: Path):
    data = src.read_bytes()
    if not data.startswith(MAGIC):
        raise SystemExit(f"{src} is not a Renkei backup")
    restore_raw(url, crypto.unseal(file_key(master, "backup"), data[len(MAGIC):], "backup"))

