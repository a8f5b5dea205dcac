"""Organisations, users and their credentials."""

from datetime import datetime

from sqlalchemy import BigInteger, Boolean, DateTime, ForeignKey, Integer, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from models.base import Base, new_id, utcnow

ORGANIZATION_KINDS = (
    "clinic",
    "hospital",
    "visiting_nurse_station",
    "care_management_office",
    "disability_consultation_office",
    "pharmacy",
    "community_support_center",
    "municipality",
    "other",
)
PROFESSIONS = ("physician", "nurse", "care_manager", "disability_support_worker", "pharmacist", "therapist", "other")


class Organization(Base):
    __tablename__ = "organizations"
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(40))
    phone: Mapped[str | None] = mapped_column(String(40))  # the office's number, for the emergency sheet
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class User(Base):
    __tablename__ = "users"
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    # An account invited without a login holds "~" + its id until the person chooses one
    # (renkei/people/invitations.py): no login anyone can type begins with "~".
    login: Mapped[str] = mapped_column(String(100), unique=True)
    password_hash: Mapped[str] = mapped_column(String(200))
    display_name: Mapped[str] = mapped_column(String(200))
    organization_id: Mapped[str] = mapped_column(ForeignKey("organizations.id"), index=True)
    profession: Mapped[str] = mapped_column(String(40))
    phone: Mapped[str | None] = mapped_column(String(40))  # a work number the team may call
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    is_auditor: Mapped[bool] = mapped_column(Boolean, default=False)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    # TOTP secret sealed with the system key; enabled only once confirmed with a code.
    totp_secret_ct: Mapped[bytes | None] = mapped_column(LargeBinary)
    totp_enabled: Mapped[bool] = mapped_column(Boolean, default=False)
    totp_last_counter: Mapped[int] = mapped_column(Integer, default=0)  # no code replay
    # Bumped to end every browser session of the user (logout everywhere, disable).
    session_generation: Mapped[int] = mapped_column(Integer, default=0)
    # Last realtime sequence number handed to this user (docs/API.md, `seq`).
    event_seq: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    # The last reset of this person's access (renkei/people/resets.py): shown to them once at
    # their next sign-in; until watch_until (a day after the new password) their
    # clinical reads are marked and announced.
    reset_at: Mapped[datetime | None] = mapped_column(DateTime)
    watch_until: Mapped[datetime | None] = mapped_column(DateTime)
    reset_by: Mapped[str | None] = mapped_column(String(36))
    reset_notice: Mapped[bool] = mapped_column(Boolean, default=False)
    totp_reenrol: Mapped[bool] = mapped_column(Boolean, default=False)  # enrol a second factor before anything else
    # Two people for every identity an administrator sets (renkei/people/confirmations.py): who
    # created the account or last changed its name, profession, organisation or role
    # (None: on the server), and who confirmed it since. Unconfirmed, it opens no patient.
    changed_by: Mapped[str | None] = mapped_column(String(36))
    made_by: Mapped[str | None] = mapped_column(String(36))  # who created it, kept for good
    confirmed_at: Mapped[datetime | None] = mapped_column(DateTime)
    confirmed_by: Mapped[str | None] = mapped_column(String(36))

    organization: Mapped[Organization] = relationship(lazy="joined")

    # Flask-Login protocol
    is_authenticated = True
    is_anonymous = False

    @property
    def is_active(self) -> bool:
        return not self.disabled

    def get_id(self) -> str:
        return f"{self.id}:{self.session_generation}"


class ApiToken(Base):
    """Bearer tokens: only a SHA-256 of the token is stored."""

    __tablename__ = "api_tokens"
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(DateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime)
    # Issued before the person had a second factor: opens only the enrolment, for good.
    # None: issued before this rule (auth.enrolment_only then asks how the person stands).
    enrolment_only: Mapped[bool | None] = mapped_column(Boolean)


class AccessReset(Base):
    """An administrator's reset of a person's access, approved by a second administrator
    where there is one. Approval ends every credential and issues a one-time recovery
    code, stored hashed, with which the person chooses a new password themselves."""

    __tablename__ = "access_resets"
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    requested_by: Mapped[str | None] = mapped_column(ForeignKey("users.id"))  # None: on the server (CLI)
    requested_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    approved_by: Mapped[str | None] = mapped_column(ForeignKey("users.id"))
    approved_at: Mapped[datetime | None] = mapped_column(DateTime)
    code_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    code_expires_at: Mapped[datetime | None] = mapped_column(DateTime)
    used_at: Mapped[datetime | None] = mapped_column(DateTime)


class Invitation(Base):
    """How a person an administrator created sets their own password: a single-use code
    (stored hashed) handed to them in a link, valid for a week (renkei/people/invitations.py)."""

    __tablename__ = "invitations"
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    code_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_by: Mapped[str | None] = mapped_column(ForeignKey("users.id"))  # None: on the server
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(DateTime)
    used_at: Mapped[datetime | None] = mapped_column(DateTime)


class Passkey(Base):
    """A WebAuthn credential (renkei/people/passkeys.py): its public key and sign counter.
    The name ("iPad 訪問用") is the person's own label for a device, not patient data."""

    __tablename__ = "passkeys"
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    credential_id: Mapped[bytes] = mapped_column(LargeBinary, unique=True)
    public_key: Mapped[bytes] = mapped_column(LargeBinary)  # COSE
    sign_count: Mapped[int] = mapped_column(BigInteger, default=0)  # up to 2³²
    name: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime)


class UsedChallenge(Base):
    """A WebAuthn challenge that was answered (renkei/people/passkeys.py): challenges are
    stateless until used, and each is used once. Kept until it would have expired."""

    __tablename__ = "used_challenges"
    digest: Mapped[str] = mapped_column(String(64), primary_key=True)
    expires_at: Mapped[datetime] = mapped_column(DateTime, index=True)


class LoginThrottle(Base):
    """Sign-in attempts counted per key — a login name from one address, a login name
    from anywhere, an address for any login (renkei/people/auth.py) — whether or not the login
    exists, so a locked account and an unknown one answer alike. Keys are hashes."""

    __tablename__ = "login_throttle"
    login_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[datetime | None] = mapped_column(DateTime)
    window_start: Mapped[datetime | None] = mapped_column(DateTime)  # counting restarts after a window
    login_digest: Mapped[str | None] = mapped_column(String(64), index=True)  # whose login, for unlocking


class SystemKey(Base):
    """Service-wide keys (blind index, TOTP secrets), wrapped by the master key."""

    __tablename__ = "system_keys"
    name: Mapped[str] = mapped_column(String(40), primary_key=True)
    kek_id: Mapped[str] = mapped_column(String(16))
    wrapped_key: Mapped[bytes] = mapped_column(LargeBinary)
