"""What an account is before any patient: confirmed by a second person or not (issue 29),
an administrator, an auditor. Administrator and auditor pages and routes check here;
access to a patient is renkei/patients/authz.py, which checks here first."""

from models import User
from renkei.common.problems import Problem


def require_confirmed(user: User):
    """An account an administrator created or changed opens nothing until a second person
    confirms it (renkei/people/confirmations.py). Checked before any patient is looked up."""
    if user.confirmed_at is None:
        raise Problem(403, "This account awaits a second person's confirmation.", type_="/problems/account-unconfirmed")


def require_staff(user: User, who: str):
    """who: "admin" (administrators), "audit" (administrators and auditors) or
    "auditor" (auditors only: what they read holds clinical text). An unconfirmed
    account is none of these."""
    require_confirmed(user)
    if who == "admin" and not user.is_admin:
        raise Problem(403, "Administrators only.")
    if who == "auditor" and not user.is_auditor:
        raise Problem(403, "Auditors only.")
    if who == "audit" and not (user.is_admin or user.is_auditor):
        raise Problem(403, "Administrators and auditors only.")
