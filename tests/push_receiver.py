"""A push service for tests: an HTTP server on 127.0.0.1 that plays the browser vendor's
push service and the device behind it. It checks the VAPID JWT (RFC 8292: ES256 under
the key in `k`, audience = this origin, expiry within a day, a contact in `sub`) and
decrypts the body as the device would (RFC 8291 aes128gcm, with http_ece)."""

import base64
import json
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import http_ece
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Device:
    """A browser's subscription: its key pair and auth secret."""

    def __init__(self, receiver, name: str):
        self.name, self.receiver = name, receiver
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.auth = os.urandom(16)
        self.status = 201  # what the push service answers for this device ("trickle": slowly)
        self.retry_after = None  # a Retry-After header to send with it

    @property
    def endpoint(self) -> str:
        return f"{self.receiver.origin}/push/{self.name}"

    def subscription(self, label: str | None = None) -> dict:
        point = self.key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        sub = {
            "endpoint": self.endpoint,
            "expirationTime": None,
            "keys": {"p256dh": b64url(point), "auth": b64url(self.auth)},
        }
        return sub | ({"label": label} if label else {})


class Received:
    def __init__(
        self,
        device: str,
        payload: dict,
        headers: dict,  # header names in lower case
        vapid_key: str,
        claims: dict,
    ):
        self.device, self.payload, self.headers, self.vapid_key, self.claims = (
            device,
            payload,
            headers,
            vapid_key,
            claims,
        )
        self.at = time.perf_counter()  # when it arrived (bench/push.py)


class PushReceiver:
    def __init__(self, host: str = "127.0.0.1"):
        self.devices: dict[str, Device] = {}
        self.reached_at: list[str] = []  # the local address each request came in on
        self.received: list[Received] = []
        self.refused: list[str] = []  # what a real push service would have rejected, and why
        self.answers: list[tuple[str, int]] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with receiver.lock:
                    receiver.reached_at.append(self.connection.getsockname()[0])
                name = self.path.rsplit("/", 1)[-1]
                device = receiver.devices.get(name)
                if device is not None and device.status == "trickle":  # answers a byte a second
                    for byte in b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n":
                        try:
                            self.wfile.write(bytes([byte]))
                            self.wfile.flush()
                        except OSError:
                            return
                        time.sleep(1)
                    return
                status = receiver._handle(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                self.send_response(status)
                if device is not None and device.retry_after is not None:
                    self.send_header("Retry-After", device.retry_after)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer((host, 0), Handler)
        self.server.daemon_threads = True
        self.origin = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def device(self, name: str) -> Device:
        self.devices[name] = Device(self, name)
        return self.devices[name]

    def _handle(self, path: str, headers: dict, body: bytes) -> int:
        name = path.rsplit("/", 1)[-1]
        device = self.devices.get(name)
        if device is None:
            return 404
        with self.lock:
            self.answers.append((name, device.status))
        if device.status >= 300:
            return device.status
        try:
            key, claims = self._check_vapid(headers.get("authorization", ""))
            if headers.get("content-encoding") != "aes128gcm" or "ttl" not in headers:
                raise ValueError("not an RFC 8291 message")
            plain = http_ece.decrypt(body, private_key=device.key, auth_secret=device.auth, version="aes128gcm")
            payload = json.loads(plain)
        except Exception as exc:  # what a push service or the browser would refuse
            with self.lock:
                self.refused.append(f"{name}: {exc!r}")
            return 400
        with self.lock:
            self.received.append(Received(name, payload, headers, key, claims))
        return 201

    def _check_vapid(self, authorization: str) -> tuple[str, dict]:
        scheme, _, params = authorization.partition(" ")
        if scheme.lower() != "vapid":
            raise ValueError("no VAPID authorization")
        parts = dict(p.strip().split("=", 1) for p in params.split(","))
        token, key = parts["t"], parts["k"]
        head, claims_b64, sig = token.split(".")
        public = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), unb64url(key))
        raw = unb64url(sig)
        der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
        try:
            public.verify(der, f"{head}.{claims_b64}".encode(), ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            raise ValueError("VAPID signature does not verify")
        if json.loads(unb64url(head)).get("alg") != "ES256":
            raise ValueError("VAPID JWT is not ES256")
        claims = json.loads(unb64url(claims_b64))
        if claims.get("aud") != self.origin:
            raise ValueError(f"VAPID audience {claims.get('aud')!r} is not {self.origin}")
        if not time.time() < claims["exp"] <= time.time() + 24 * 3600:
            raise ValueError("VAPID expiry not within a day")
        if not str(claims.get("sub", "")).startswith(("mailto:", "https://")):
            raise ValueError("VAPID sub is no contact")
        return key, claims

    def wait_for(self, count: int, timeout: float = 10) -> list[Received]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.received) >= count:
                    return list(self.received)
            time.sleep(0.05)
        with self.lock:
            return list(self.received)

    def close(self):
        self.server.shutdown()
        self.server.server_close()
