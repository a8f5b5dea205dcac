"""Encrypted backups (pg_dump / SQLite online backup) and restore.

A backup file is AES-256-GCM ciphertext under a key derived from the master key
(HKDF, info "renkei backup v1"), so a copied backup is useless without the key
that also guards the data keys. Restore needs the same master key.

Format 2 streams: the dump is sealed in frames (renkei/common/frames.py) as pg_dump writes
it, so memory stays flat however large the database (attachments included). A restore
first authenticates every frame, then streams them into pg_restore: a tampered or cut
file changes nothing. Format 1 (one sealed message) is still read."""

import os
import sqlite3
import subprocess
import tempfile
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy.engine import make_url

from renkei.common import crypto, frames

MAGIC = b"RENKEI-BACKUP-1\n"  # format 1: the whole dump as one sealed message
MAGIC_FRAMED = b"RENKEI-BACKUP-2\n"
READ = 1024 * 1024
PG_BIN = os.environ.get("PGBIN", "/usr/lib/postgresql/15/bin")


def file_key(master: bytes, purpose: str) -> bytes:
    """The key for files that leave the database (backups, audit archives)."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=f"renkei {purpose} v1".encode()).derive(master)


def _pg_args(url: str) -> tuple[list[str], dict]:
    u = make_url(url)
    env = os.environ | ({"PGPASSWORD": u.password} if u.password else {})
    return [
        "-h",
        u.host or "127.0.0.1",
        "-p",
        str(u.port or 5432),
        "-U",
        u.username or "postgres",
        "-d",
        u.database,
    ], env


def _tool(name: str) -> str:
    local = Path(PG_BIN) / name
    return str(local) if local.exists() else name


def _dump_chunks(url: str):
    """The dump, a piece at a time."""
    if url.startswith("sqlite"):
        src = make_url(url).database
        with tempfile.TemporaryDirectory() as tmp:
            out = os.path.join(tmp, "copy.db")
            with sqlite3.connect(src) as a, sqlite3.connect(out) as b:
                a.backup(b)  # consistent online copy (the database file as it is on disk)
            with open(out, "rb") as f:
                yield from iter(lambda: f.read(READ), b"")
        return
    args, env = _pg_args(url)
    with tempfile.TemporaryFile() as err:  # not a pipe: a full one would stall the dump
        proc = subprocess.Popen([_tool("pg_dump"), "-Fc", *args], env=env, stdout=subprocess.PIPE, stderr=err)
        yield from iter(lambda: proc.stdout.read(READ), b"")
        if proc.wait() != 0:
            err.seek(0)
            raise RuntimeError("pg_dump failed: " + err.read().decode(errors="replace")[-2000:])


def _frame_aad(index: int, last: bool) -> str:
    return f"backup|frame={index}|{'last' if last else 'more'}"


def backup(url: str, master: bytes, out: Path) -> int:
    partial = out.with_name(out.name + ".partial")  # a failed dump leaves no file that looks whole
    with open(partial, "wb") as f:
        os.chmod(partial, 0o600)
        f.write(MAGIC_FRAMED)
        for sealed in frames.seal_frames(file_key(master, "backup"), _frame_aad, _dump_chunks(url)):
            f.write(sealed)
        f.flush()
        os.fsync(f.fileno())
    os.replace(partial, out)
    return out.stat().st_size


def _plain_frames(master: bytes, src: Path):
    """The dump from a format-2 file, a frame at a time."""
    count = -(-(src.stat().st_size - len(MAGIC_FRAMED)) // frames.SEALED_FRAME)
    f = open(src, "rb")
    f.seek(len(MAGIC_FRAMED))
    sealed = iter(lambda: f.read(frames.SEALED_FRAME), b"")
    try:
        yield from frames.open_frames(file_key(master, "backup"), _frame_aad, sealed, count)
    finally:
        f.close()


def restore(url: str, master: bytes, src: Path):
    with open(src, "rb") as f:
        magic = f.read(len(MAGIC_FRAMED))
    if magic == MAGIC:
        data = src.read_bytes()
        return _restore_from(url, [crypto.unseal(file_key(master, "backup"), data[len(MAGIC) :], "backup")])
    if magic != MAGIC_FRAMED:
        raise SystemExit(f"{src} is not a Renkei backup")
    try:
        for _ in _plain_frames(master, src):  # every frame authentic before anything changes
            pass
    except crypto.DecryptionError:
        raise SystemExit(f"{src}: wrong master key, or the file was altered or cut short")
    _restore_from(url, _plain_frames(master, src))


def _restore_from(url: str, chunks):
    if url.startswith("sqlite"):
        target = Path(make_url(url).database)
        partial = target.with_name(target.name + ".restoring")
        with open(partial, "wb") as f:
            for chunk in chunks:
                f.write(chunk)
        os.replace(partial, target)
        return
    args, env = _pg_args(url)
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(
            [_tool("pg_restore"), "--clean", "--if-exists", "--no-owner", *args],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
        try:
            for chunk in chunks:
                proc.stdin.write(chunk)
        finally:
            proc.stdin.close()
        if proc.wait() != 0:
            err.seek(0)
            raise subprocess.CalledProcessError(proc.returncode, "pg_restore", stderr=err.read())
