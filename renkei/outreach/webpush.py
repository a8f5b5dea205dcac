"""Web Push (RFC 8030) to people's devices: their subscriptions, the VAPID key
(RFC 8292), and sending one message, encrypted for the device (RFC 8291, aes128gcm)
by pywebpush. A message names a kind and identifiers only; the device shows a fixed
text (static/sw.js). docs/ARCHITECTURE.md, "Push and e-mail"."""

import base64
import ipaddress
import json
import math
import re
import socket
import threading
from urllib.parse import urlsplit

import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from flask import current_app
from py_vapid import Vapid02
from pywebpush import WebPushException, webpush
from requests.adapters import HTTPAdapter
from sqlalchemy import delete, func, select
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from models import Delivery, PushSubscription, User, new_id, utcnow
from renkei.common import crypto, db, vault
from renkei.common.problems import Problem, invalid, not_found

P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
TTL_SECONDS = 24 * 3600  # a push service keeps a message this long for a device that is off
MAX_DEVICES = 10  # per person: each event is one push per device
TIMEOUT = (3.05, 5)  # connect, read: a slow push service delays the next delivery, not a request


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def vapid() -> Vapid02:
    """The service's VAPID key pair: a P-256 key made from a system key, so it is
    generated once, wrapped by the master key and rotated with it like the others."""
    seed = int.from_bytes(vault.system_key("vapid"), "big")
    return Vapid02(ec.derive_private_key(seed % (P256_ORDER - 1) + 1, ec.SECP256R1()))


def public_key() -> str:
    """The application server key a browser subscribes with (base64url, uncompressed point)."""
    return b64url(
        vapid().public_key.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    )


# --- who may be sent to --------------------------------------------------------------

# Push service URLs as browsers hand them out: a scheme, a plain host name or address,
# maybe a port, a path and query — nothing in the host part that another URL parser could
# read a different host from (a backslash, "@", "%", spaces).
ENDPOINT = re.compile(
    r"^https?://([A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(:[0-9]{1,5})?(/[A-Za-z0-9._~!$&'()*+,;=:/?%-]*)?$"
)
NAT64 = ipaddress.ip_network("64:ff9b::/96")
SIIT = ipaddress.ip_network("::ffff:0:0:0/96")  # IPv4-translated (RFC 2765): an IPv4 address in the low 32 bits
# Never a push service, whatever Python's tables say of them (issue 29): local-use NAT64
# (RFC 8215: the IPv4 address sits where the operator chose), SRv6 segment ids
# (RFC 9602) and the newer documentation prefix (RFC 9637).
NOT_THE_INTERNET = tuple(ipaddress.ip_network(n) for n in ("64:ff9b:1::/48", "5f00::/16", "3fff::/20"))
PUSH_PORT = 443  # push services listen on the HTTPS port; another is refused (but in development)


def forbidden_address(ip: ipaddress._BaseAddress, development: bool) -> bool:
    """True for an address a push may not go to: anything not on the internet (loopback,
    private, link-local, shared, reserved, multicast), also behind IPv6 forms that carry
    an IPv4 address. In development, loopback is allowed (tests, local trials)."""
    if isinstance(ip, ipaddress.IPv6Address):
        if any(ip in network for network in NOT_THE_INTERNET):
            return True
        embedded = (
            ip.ipv4_mapped
            or ip.sixtofour
            or (ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF) if ip in NAT64 or ip in SIIT else None)
        )
        if embedded is not None:
            return forbidden_address(embedded, development)
        if ip.teredo or ip.is_site_local or int(ip) >> 32 == 0:  # tunnels, fec0::/10, ::a.b.c.d
            return not (development and ip.is_loopback)
    if development and ip.is_loopback:
        return False
    return not ip.is_global or ip.is_multicast


def check_endpoint(url: str) -> str | None:
    """Why Renkei will not send to `url`, or None. Push services are on the internet:
    an endpoint that is not https, or whose name resolves to an address that is not
    (`forbidden_address`), could make the server send requests into its own network.
    The connection itself is checked again when a push is sent (`_CheckedConnection`)."""
    development = current_app.config["RENKEI"].development
    match = ENDPOINT.match(url)
    if not match:
        return "Not a push service URL."
    parts = urlsplit(url)
    if parts.scheme != "https" and not (development and parts.scheme == "http"):
        return "A push endpoint must be https://."
    if not development and parts.port not in (None, PUSH_PORT):
        return f"A push endpoint is on port {PUSH_PORT}."
    try:
        infos = socket.getaddrinfo(
            parts.hostname, parts.port or (443 if parts.scheme == "https" else 80), proto=socket.IPPROTO_TCP
        )
    except (OSError, UnicodeError, ValueError):
        return "The endpoint's host does not resolve."
    addresses = [ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos]
    if any(forbidden_address(ip, development) for ip in addresses):
        return "The endpoint resolves to an address that is not on the internet."
    if parts.scheme == "http" and not all(ip.is_loopback for ip in addresses):
        return "A push endpoint must be https://."
    return None


def _device_keys(keys) -> dict:
    """The browser's p256dh (an uncompressed P-256 point) and auth secret (16 bytes)."""
    errors = {}
    keys = keys if isinstance(keys, dict) else {}
    try:
        ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), _unb64url(keys.get("p256dh") or ""))
    except (ValueError, TypeError):
        errors["p256dh"] = ["Not a P-256 public key in base64url."]
    try:
        if len(_unb64url(keys.get("auth") or "")) != 16:
            raise ValueError
    except (ValueError, TypeError):
        errors["auth"] = ["Not a 16-byte secret in base64url."]
    if errors:
        raise invalid({"keys": errors})
    return {"p256dh": keys["p256dh"], "auth": keys["auth"]}


# --- a person's devices ---------------------------------------------------------------


def _aad(row: PushSubscription) -> str:
    return f"push|{row.id}|{row.user_id}"


def opened(row: PushSubscription) -> dict:
    return crypto.unseal_json(vault.system_key("contacts"), row.sealed, _aad(row))


def _out(row: PushSubscription) -> dict:
    info = opened(row)
    return {
        "id": row.id,
        "endpoint": info["endpoint"],
        "label": info.get("label"),
        "created_at": row.created_at,
        "last_used_at": row.last_used_at,
    }


def subscribe(user: User, body: dict) -> tuple[dict, bool]:
    """Keep a device's subscription (sealed). The same endpoint again is the same
    subscription (True: created). An endpoint another person had is theirs no more."""
    endpoint = body["endpoint"]
    reason = check_endpoint(endpoint)
    if reason:
        raise invalid({"endpoint": [reason]})
    keys = _device_keys(body.get("keys"))
    digest = vault.keyed_digest("push endpoint", endpoint)
    row = db.session.execute(
        select(PushSubscription).where(PushSubscription.endpoint_digest == digest).with_for_update()
    ).scalar()
    if row is not None and row.user_id != user.id:
        remove(row)
        db.session.flush()
        row = None
    created = row is None
    if (
        created
        and db.session.execute(select(func.count()).where(PushSubscription.user_id == user.id)).scalar() >= MAX_DEVICES
    ):
        raise Problem(409, f"At most {MAX_DEVICES} devices receive pushes; remove one first.")
    if created:
        row = PushSubscription(id=new_id(), user_id=user.id, endpoint_digest=digest, created_at=utcnow())
    label = body.get("label") or (opened(row).get("label") if not created else None)
    row.sealed = crypto.seal_json(
        vault.system_key("contacts"), {"endpoint": endpoint, "keys": keys, "label": label}, _aad(row)
    )
    db.session.add(row)
    db.session.flush()
    return _out(row), created


def subscriptions(user: User) -> list[dict]:
    rows = db.session.execute(
        select(PushSubscription).where(PushSubscription.user_id == user.id).order_by(PushSubscription.created_at)
    ).scalars()
    return [_out(row) for row in rows]


def unsubscribe(user: User, subscription_id: str):
    row = db.session.get(PushSubscription, subscription_id)
    if row is None or row.user_id != user.id:
        raise not_found()
    remove(row)


def remove(row: PushSubscription):
    db.session.execute(delete(Delivery).where(Delivery.subscription_id == row.id))
    db.session.delete(row)


def remove_all(user_id: str):
    """Every device of a person (their credentials ended: reset, disabled)."""
    ids = select(PushSubscription.id).where(PushSubscription.user_id == user_id)
    db.session.execute(delete(Delivery).where(Delivery.subscription_id.in_(ids)))
    db.session.execute(delete(PushSubscription).where(PushSubscription.user_id == user_id))


# --- sending ------------------------------------------------------------------------

SEND_SECONDS = 10  # a push service that has not answered by then is tried again later


class ForbiddenAddress(Exception):
    """Not an OSError: urllib3 and requests let it through instead of retrying."""


class _CheckedConnection:
    """Checks the address a push connection actually reached before a byte is sent
    (a host name may resolve elsewhere than when it was checked), and gives the whole
    exchange SEND_SECONDS: past that the socket is shut, so a push service that
    answers a byte at a time cannot hold the sender."""

    def _new_conn(self):
        sock = super()._new_conn()
        if forbidden_address(ipaddress.ip_address(sock.getpeername()[0].split("%")[0]), self.renkei_development):
            sock.close()
            raise ForbiddenAddress("the push endpoint resolved to an address that is not on the internet")
        self.renkei_deadline = threading.Timer(SEND_SECONDS, _shut, (sock,))
        self.renkei_deadline.daemon = True
        self.renkei_deadline.start()
        return sock

    def close(self):
        if getattr(self, "renkei_deadline", None) is not None:
            self.renkei_deadline.cancel()
        super().close()


def _shut(sock):
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


def _session(development: bool) -> requests.Session:
    """A session for one push: no redirects (a push service answers; it never sends us
    elsewhere), no proxy or .netrc from the environment, every connection checked."""
    http = type("CheckedHTTPConnection", (_CheckedConnection, HTTPConnection), {"renkei_development": development})
    https = type("CheckedHTTPSConnection", (_CheckedConnection, HTTPSConnection), {"renkei_development": development})

    class Adapter(HTTPAdapter):
        def init_poolmanager(self, *args, **kwargs):
            super().init_poolmanager(*args, **kwargs)
            self.poolmanager.pool_classes_by_scheme = {
                "http": type("Pool", (HTTPConnectionPool,), {"ConnectionCls": http}),
                "https": type("Pool", (HTTPSConnectionPool,), {"ConnectionCls": https}),
            }

    class Session(requests.Session):
        def request(self, *args, **kwargs):
            kwargs["allow_redirects"] = False
            return super().request(*args, **kwargs)

    session = Session()
    session.trust_env = False
    session.mount("http://", Adapter())
    session.mount("https://", Adapter())
    return session


def _subject() -> str:
    """VAPID's contact for push services: the sender address, else the public URL."""
    s = current_app.config["RENKEI"]
    if s.mail_from:
        return "mailto:" + s.mail_from
    if s.public_url and s.public_url.startswith("https://"):
        return s.public_url
    return "mailto:renkei@localhost"


class Gone(Exception):
    """The push service says the subscription no longer exists (404/410)."""


class Later(Exception):
    """Try again later: the push service is down, busy (429/5xx) or unreachable."""

    def __init__(self, retry_after: float | None = None):
        super().__init__(retry_after)
        self.retry_after = retry_after


def send(info: dict, payload: dict, urgent: bool):
    """Send one message to the device of `info` (an opened subscription). Raises Gone,
    Later, or ValueError (refused for good: a bad endpoint, or a 4xx a retry would not
    change)."""
    if not ENDPOINT.match(info["endpoint"]):
        raise ValueError("not a push service URL")
    with _session(current_app.config["RENKEI"].development) as session:
        try:
            webpush(
                {"endpoint": info["endpoint"], "keys": info["keys"]},
                json.dumps(payload, separators=(",", ":")),
                vapid_private_key=vapid(),
                vapid_claims={"sub": _subject()},
                ttl=TTL_SECONDS,
                timeout=TIMEOUT,
                headers={"Urgency": "high" if urgent else "normal"},
                requests_session=session,
            )
        except WebPushException as exc:
            status = exc.response.status_code if exc.response is not None else None
            if status in (404, 410):
                raise Gone()
            if status is None or status == 429 or status >= 500:
                raise Later(_retry_after(exc.response))
            raise ValueError(f"the push service answered {status}")
        except requests.RequestException:
            raise Later()
        except ForbiddenAddress as exc:
            raise ValueError(str(exc))


def _retry_after(resp) -> float | None:
    """Retry-After in seconds, within 1 s to an hour (a push service's word, not law)."""
    try:
        seconds = float(resp.headers.get("Retry-After"))
    except (AttributeError, TypeError, ValueError):
        return None
    return min(max(seconds, 1.0), 3600.0) if math.isfinite(seconds) else None
