"""Sending e-mail through the deployment's SMTP server (RENKEI_SMTP_URL). Mails carry
a fixed text and a link behind sign-in, never a name or clinical text
(docs/ARCHITECTURE.md, "Push and e-mail")."""

import smtplib
import ssl
from email.message import EmailMessage
from email.utils import make_msgid
from urllib.parse import parse_qs, unquote, urlsplit

from flask import current_app

TIMEOUT = 10


class NotConfigured(Exception):
    pass


def configured() -> bool:
    return bool(current_app.config["RENKEI"].smtp_url)


def _connect(url: str) -> smtplib.SMTP:
    """smtp://[user:password@]host[:port][?starttls=false] — STARTTLS unless told not
    to (a relay on the same machine); smtps:// — TLS from the first byte."""
    parts = urlsplit(url)
    context = ssl.create_default_context()
    if parts.scheme == "smtps":
        smtp = smtplib.SMTP_SSL(parts.hostname, parts.port or 465, timeout=TIMEOUT, context=context)
    elif parts.scheme == "smtp":
        smtp = smtplib.SMTP(parts.hostname, parts.port or 587, timeout=TIMEOUT)
        if parse_qs(parts.query).get("starttls", ["true"])[0] != "false":
            smtp.starttls(context=context)
    else:
        raise NotConfigured("RENKEI_SMTP_URL must be smtp:// or smtps://")
    if parts.username:
        smtp.login(unquote(parts.username), unquote(parts.password or ""))
    return smtp


def send(to: str, subject: str, text: str):
    """Send one plain-text mail; smtplib's errors (and OSError) mean: try again later."""
    settings = current_app.config["RENKEI"]
    if not settings.smtp_url:
        raise NotConfigured("RENKEI_SMTP_URL is not set")
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = settings.mail_from, to, subject
    msg["Message-ID"] = make_msgid(domain=settings.mail_from.rpartition("@")[2] or None)
    msg.set_content(text)
    with _connect(settings.smtp_url) as smtp:
        smtp.send_message(msg)
