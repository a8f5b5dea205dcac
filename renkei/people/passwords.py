"""What a new password must be (OWASP ASVS 5.0 V6.2): at least 12 characters, up to
200, not a common or breached one (renkei/common-passwords.txt, shipped with the
project), not the person's own login or name. No composition rules: length is what
makes a password strong, and people write long phrases more easily than symbols."""

from functools import cache
from pathlib import Path

from renkei.common.problems import invalid

MIN_LENGTH = 12
COMMON = Path(__file__).with_name("common-passwords.txt")


@cache
def _common() -> frozenset:
    return frozenset(line.strip() for line in COMMON.read_text().splitlines() if line and line[0] != "#")


def check(password: str, *, login: str = "", display_name: str = "", field: str = "password"):
    """Raise 422 naming `field` when the password will not do."""
    folded = password.casefold()
    if len(password) < MIN_LENGTH:
        reason = f"At least {MIN_LENGTH} characters."
    elif folded in _common() or len(set(folded)) < 4:
        reason = "This password is too common; choose a longer phrase of your own."
    elif any(part and len(part) >= 4 and part.casefold() in folded for part in (login, display_name.replace(" ", ""))):
        reason = "The password must not contain your login or name."
    else:
        return
    raise invalid({field: [reason]})
