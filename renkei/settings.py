"""Settings from the environment (docs/API.md, "Configuration"). The embedded default keeps everything
under instance/ so `python wsgi.py` works on a fresh clone."""

import base64
import os
import secrets
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
INSTANCE = Path(os.environ.get("RENKEI_INSTANCE_DIR", ROOT / "instance"))


def _generated_secret(name: str, warn: str | None) -> bytes:
    """Read a key generated on first start, or make one (0600) under instance/."""
    INSTANCE.mkdir(parents=True, exist_ok=True)
    path = INSTANCE / name
    if not path.exists():  # written aside, then linked: another process never reads it half-written
        fd, tmp = tempfile.mkstemp(dir=INSTANCE, prefix=f".{name}.")
        with os.fdopen(fd, "w") as f:
            f.write(base64.b64encode(secrets.token_bytes(32)).decode() + "\n")
        try:
            os.link(tmp, path)
        except FileExistsError:  # another process starting at the same moment made it first
            pass
        finally:
            os.unlink(tmp)
    if warn:
        print(warn.format(path=path), file=sys.stderr)
    return base64.b64decode(path.read_text().strip())


def _decode_key(text: str, source: str) -> bytes:
    try:
        key = base64.b64decode(text.strip(), validate=True)
    except ValueError:
        raise SystemExit(f"{source}: not base64")
    if len(key) != 32:
        raise SystemExit(f"{source}: a key must be 32 bytes, got {len(key)}")
    return key


MISSING_KEY = (
    "{name} is not set. Outside the embedded default (no RENKEI_DATABASE_URL) every "
    "process must be given the same keys (platform/KEYS.md); RENKEI_ENV=development "
    "generates throwaway ones under instance/."
)


def _master_keys(may_generate: bool) -> tuple[bytes, list[bytes]]:
    """The current master key and any previous ones still accepted while a
    rotation is under way (RENKEI_MASTER_KEY_PREVIOUS, comma-separated base64)."""
    if os.environ.get("RENKEI_MASTER_KEY"):
        current = _decode_key(os.environ["RENKEI_MASTER_KEY"], "RENKEI_MASTER_KEY")
    elif os.environ.get("RENKEI_MASTER_KEY_FILE"):
        path = os.environ["RENKEI_MASTER_KEY_FILE"]
        try:
            current = _decode_key(Path(path).read_text(), path)
        except OSError as exc:
            raise SystemExit(f"RENKEI_MASTER_KEY_FILE: cannot read {path}: {exc.strerror}")
    elif not may_generate:
        raise SystemExit(MISSING_KEY.format(name="RENKEI_MASTER_KEY (or RENKEI_MASTER_KEY_FILE)"))
    else:
        current = _generated_secret(
            "master.key",
            "\n*** WARNING: using a DEVELOPMENT master key generated at {path}.\n"
            "*** Patient data encrypted with it is only as safe as that file.\n"
            "*** Set RENKEI_MASTER_KEY or RENKEI_MASTER_KEY_FILE in production.\n",
        )
    previous = [
        _decode_key(k, "RENKEI_MASTER_KEY_PREVIOUS")
        for k in os.environ.get("RENKEI_MASTER_KEY_PREVIOUS", "").split(",")
        if k.strip()
    ]
    return current, previous


def _audit_seeds(embedded: bool, may_generate: bool) -> list[bytes]:
    """The access log's keys (renkei/access_log/keyring.py): RENKEI_AUDIT_KEY_FILE, one base64
    seed per line, the last one current. Required like the master key: several machines
    must share one file (platform/KEYS.md), and each would otherwise sign with its own
    (issue 29). Generated under instance/ only for the embedded default or development."""
    path = os.environ.get("RENKEI_AUDIT_KEY_FILE")
    if not path:
        if not may_generate:
            raise SystemExit(MISSING_KEY.format(name="RENKEI_AUDIT_KEY_FILE"))
        _generated_secret(
            "audit.key",
            None
            if embedded
            else "*** RENKEI_AUDIT_KEY_FILE is not set: the access log's heads are signed with {path}.\n"
            "*** Development only: every machine must use the same audit key file (platform/KEYS.md).",
        )
        path = INSTANCE / "audit.key"
    try:
        lines = [line for line in Path(path).read_text().splitlines() if line.strip()]
    except OSError as exc:
        raise SystemExit(f"RENKEI_AUDIT_KEY_FILE: cannot read {path}: {exc.strerror}")
    if not lines:
        raise SystemExit(f"{path}: no audit key")
    return [_decode_key(line, str(path)) for line in lines]


def _throwaway_audit_sink() -> Path:
    return Path(tempfile.mkdtemp(prefix="renkei-audit-heads-"))


@dataclass
class Settings:
    database_url: str
    master_key: bytes
    previous_master_keys: list[bytes]
    secret_key: bytes
    redis_url: str | None
    host: str = "127.0.0.1"
    port: int = 5000
    token_ttl_seconds: int = 12 * 3600
    session_idle_seconds: int = 30 * 60
    socket_sweep_seconds: float = 15  # how often a process closes sockets whose credential lapsed
    db_pool_size: int = 10  # per worker process: see platform/gunicorn.conf.py
    db_pool_timeout: float = 10  # seconds a request waits for a connection before 503
    db_lock_timeout_ms: int = 2000  # PostgreSQL: a lock not free by then is a 503
    db_idle_transaction_timeout_ms: int = 5000  # PostgreSQL ends transactions idle this long
    attachment_max_bytes: int = 20 * 1024 * 1024  # one uploaded file
    attachment_patient_quota_bytes: int = 2 * 1024**3  # all of one patient's attachments
    breakglass_seconds: int = 4 * 3600
    recovery_code_seconds: int = 3600  # a reset's one-time code: handed over by phone, used soon
    # Sign-in throttling (docs/ARCHITECTURE.md, "Authentication"): failures of one login
    # from one address lock it there; failures of one login from anywhere, or from one
    # address on any login, lock more widely at higher counts.
    lockout_threshold: int = 5
    lockout_seconds: int = 15 * 60
    # Password hashes a process lets wait or run at once (renkei/people/auth.py `hashing`); past
    # it a sign-in is 503 at once. A hash takes ~0.17 s on one of two threads: 8 is
    # about 0.7 s of waiting, within a sign-in's patience and far below the pool's size.
    signin_queue: int = 8
    login_lockout_threshold: int = 50
    address_lockout_threshold: int = 30
    # Argon2id cost; tests lower it, production keeps the library's defaults.
    argon2_time_cost: int = 3
    argon2_memory_cost: int = 65536
    allowed_origins: list[str] = field(default_factory=list)
    embedded: bool = False
    trusted_proxies: int = 0  # how many reverse proxies set X-Forwarded-For
    # The address people reach Renkei at (the emergency sheet's QR code); without it,
    # the address of the request that printed the sheet.
    public_url: str | None = None
    development: bool = False  # RENKEI_ENV=development: throwaway keys, loopback push endpoints
    # Every account needs a second factor (passkey or TOTP); off only in development.
    require_second_factor: bool = True
    # Push and e-mail (docs/ARCHITECTURE.md, "Push and e-mail"): the SMTP server and the
    # sender address; the hour (Japan time) from which the daily digests go out.
    smtp_url: str | None = None
    mail_from: str = "renkei@localhost"
    digest_hour: int = 7
    sender: bool = False  # run the sender of pushes and mails in this process (the servers do)
    # The access log (docs/ARCHITECTURE.md, "The access log"): its keys (last current),
    # the name its signed heads carry, where the heads are kept outside the database,
    # and the sealer's pace. Tests get throwaway keys and sink.
    audit_keys: list[bytes] = field(default_factory=lambda: [secrets.token_bytes(32)])
    audit_origin: str = "renkei/audit-log"
    audit_sink: Path = field(default_factory=_throwaway_audit_sink)
    audit_seal_seconds: float = 0.5  # a sealer looks for new entries this often
    audit_seal_batch: int = 5000  # at most this many entries per batch
    audit_lease_seconds: float = 10  # a sealer that stops renewing is replaced after this
    audit_sealer: bool = False  # run a sealer thread in this process (the servers do)

    @classmethod
    def from_env(cls, **overrides) -> "Settings":
        env = os.environ
        db_url = env.get("RENKEI_DATABASE_URL")
        embedded = not db_url
        if embedded:
            INSTANCE.mkdir(parents=True, exist_ok=True)
            db_url = f"sqlite:///{INSTANCE / 'renkei.db'}"
        # Generated keys only where one process owns the data: the embedded default,
        # or a developer who says so. Several machines must never each make their own.
        may_generate = embedded or env.get("RENKEI_ENV") == "development"
        master, previous = _master_keys(may_generate)
        if env.get("RENKEI_SECRET_KEY"):
            secret = env["RENKEI_SECRET_KEY"].encode()
            if len(secret) < 32:
                raise SystemExit("RENKEI_SECRET_KEY: at least 32 characters (e.g. openssl rand -base64 32)")
        elif may_generate:
            secret = _generated_secret("secret.key", None)
        else:
            raise SystemExit(MISSING_KEY.format(name="RENKEI_SECRET_KEY"))
        host = env.get("RENKEI_HOST", "127.0.0.1")
        port = int(env.get("RENKEI_PORT", "5000"))
        origins = [o for o in env.get("RENKEI_ALLOWED_ORIGINS", "").split(",") if o]
        values = dict(
            database_url=db_url,
            master_key=master,
            previous_master_keys=previous,
            secret_key=secret,
            redis_url=env.get("RENKEI_REDIS_URL") or None,
            host=host,
            port=port,
            embedded=embedded,
            allowed_origins=origins,
            token_ttl_seconds=int(env.get("RENKEI_TOKEN_TTL", 12 * 3600)),
            session_idle_seconds=int(env.get("RENKEI_SESSION_IDLE", 30 * 60)),
            socket_sweep_seconds=float(env.get("RENKEI_SOCKET_SWEEP_SECONDS", 15)),
            db_pool_size=int(env.get("RENKEI_DB_POOL_SIZE", 10)),
            signin_queue=int(env.get("RENKEI_SIGNIN_QUEUE", 8)),
            db_pool_timeout=float(env.get("RENKEI_DB_POOL_TIMEOUT", 10)),
            db_lock_timeout_ms=int(env.get("RENKEI_DB_LOCK_TIMEOUT_MS", 2000)),
            db_idle_transaction_timeout_ms=int(env.get("RENKEI_DB_IDLE_TRANSACTION_TIMEOUT_MS", 5000)),
            trusted_proxies=int(env.get("RENKEI_TRUSTED_PROXIES", "0")),
            attachment_max_bytes=int(env.get("RENKEI_ATTACHMENT_MAX_BYTES", 20 * 1024 * 1024)),
            attachment_patient_quota_bytes=int(env.get("RENKEI_ATTACHMENT_QUOTA_BYTES", 2 * 1024**3)),
            public_url=(env.get("RENKEI_PUBLIC_URL") or "").rstrip("/") or None,
            development=env.get("RENKEI_ENV") == "development",
            require_second_factor=_second_factor_required(env),
            smtp_url=env.get("RENKEI_SMTP_URL") or None,
            mail_from=env.get("RENKEI_MAIL_FROM", "renkei@localhost"),
            digest_hour=int(env.get("RENKEI_DIGEST_HOUR", 7)),
            sender=True,
            audit_keys=_audit_seeds(embedded, may_generate),
            audit_origin=env.get("RENKEI_AUDIT_ORIGIN", "renkei/audit-log"),
            audit_sink=Path(env.get("RENKEI_AUDIT_SINK") or INSTANCE / "audit-heads"),
            audit_lease_seconds=float(env.get("RENKEI_AUDIT_LEASE_SECONDS", 10)),
            audit_sealer=True,
        )
        values.update(overrides)
        return cls(**values)


def _second_factor_required(env) -> bool:
    if env.get("RENKEI_REQUIRE_SECOND_FACTOR", "1") != "0":
        return True
    if env.get("RENKEI_ENV") != "development":
        raise SystemExit("RENKEI_REQUIRE_SECOND_FACTOR=0 is allowed only with RENKEI_ENV=development")
    return False
