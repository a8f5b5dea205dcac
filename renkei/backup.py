"""Encrypted backups (pg_dump / SQLite online backup), restore, and signed
checkpoints of the audit chain's head.

A backup file is AES-256-GCM ciphertext under a key derived from the master key
(HKDF, info "renkei backup v1"), so a copied backup is useless without the key
that also guards the data keys. Restore needs the same master key."""
import json
import os
import sqlite3
import subprocess
import tempfile
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy import select
from sqlalchemy.engine import make_url

from models import AuditEntry, utcnow
from renkei import crypto, db, vault
from renkei.timefmt import iso

MAGIC = b"RENKEI-BACKUP-1\n"
PG_BIN = os.environ.get("PGBIN", "/usr/lib/postgresql/15/bin")


def _backup_key(master: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"renkei backup v1").derive(master)


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
    sealed = crypto.seal(_backup_key(master), dump(url), "backup")
    out.write_bytes(MAGIC + sealed)
    os.chmod(out, 0o600)
    return out.stat().st_size


def restore(url: str, master: bytes, src: Path):
    data = src.read_bytes()
    if not data.startswith(MAGIC):
        raise SystemExit(f"{src} is not a Renkei backup")
    restore_raw(url, crypto.unseal(_backup_key(master), data[len(MAGIC):], "backup"))


# --- audit checkpoints --------------------------------------------------------

def _signing_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(vault.system_key("audit_checkpoint"))


def _canonical(body: dict) -> bytes:
    return json.dumps({k: body[k] for k in ("seq", "hash", "at")}, separators=(",", ":"), sort_keys=True).encode()


def checkpoint() -> dict:
    """The chain's head, signed: keep it outside the system (paper, another office)."""
    head = db.session.execute(select(AuditEntry).order_by(AuditEntry.seq.desc()).limit(1)).scalar_one_or_none()
    body = {"seq": head.seq if head else 0, "hash": head.hash if head else "0" * 64, "at": iso(utcnow())}
    key = _signing_key()
    public = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return body | {"public_key": public.hex(), "signature": key.sign(_canonical(body)).hex()}


def verify_checkpoint(cp: dict) -> dict:
    """Is the signature ours, and does the log still hold that entry with that hash
    (and everything before it, unaltered)? A truncated log fails here."""
    from renkei import audit
    try:
        Ed25519PublicKey.from_public_bytes(bytes.fromhex(cp["public_key"])).verify(
            bytes.fromhex(cp["signature"]), _canonical(cp))
        ours = _signing_key().public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw).hex() == cp["public_key"]
    except Exception:
        return {"ok": False, "reason": "signature"}
    if not ours:
        return {"ok": False, "reason": "signed by another key"}
    chain = audit.verify()
    if not chain["ok"]:
        return {"ok": False, "reason": "chain", "first_bad": chain["first_bad"]}
    entry = db.session.get(AuditEntry, cp["seq"]) if cp["seq"] else None
    if cp["seq"] and (entry is None or entry.hash != cp["hash"]):
        return {"ok": False, "reason": "truncated or rewritten", "entries": chain["entries"]}
    return {"ok": True, "entries": chain["entries"]}
