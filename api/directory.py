"""Organisations and users (administrators manage; everyone may look people up to
build a team)."""
from flask_login import current_user
from sqlalchemy import select

from api import endpoint, set_audit
from api.auth import user_out
from api.schemas import OrganizationIn, OrganizationOut, UserIn, UserOut, UserPatch
from marshmallow import Schema, fields
from models import Organization, User
from renkei import auth, db
from renkei.problems import Problem, invalid, not_found


class OrganizationList(Schema):
    items = fields.List(fields.Nested(OrganizationOut))


class UserList(Schema):
    items = fields.List(fields.Nested(UserOut))


def org_out(org):
    return {"id": org.id, "name": org.name, "kind": org.kind, "created_at": org.created_at}


@endpoint("POST", "/organizations", summary="Create an organisation", tag="directory",
          action="directory.org_create", auth="admin", body=OrganizationIn,
          response=OrganizationOut, status=201)
def create_organization(body):
    org = Organization(**body)
    db.session.add(org)
    db.session.flush()
    set_audit(detail="organization=" + org.id)
    return org_out(org)


@endpoint("GET", "/organizations", summary="List organisations", tag="directory",
          action=None, response=OrganizationList)
def list_organizations():
    rows = db.session.execute(select(Organization).order_by(Organization.name)).scalars()
    return {"items": [org_out(o) for o in rows]}


@endpoint("POST", "/users", summary="Create a user", tag="directory",
          action="directory.user_create", auth="admin", body=UserIn, response=UserOut,
          status=201, errors=(409,))
def create_user(body):
    if db.session.get(Organization, body["organization_id"]) is None:
        raise invalid({"organization_id": ["No such organisation."]})
    if db.session.execute(select(User.id).where(User.login == body["login"])).first():
        raise Problem(409, "That login is taken.", errors={"login": ["That login is taken."]})
    password = body.pop("password")
    user = User(**body, password_hash=auth.hash_password(password))
    db.session.add(user)
    db.session.flush()
    set_audit(detail="user=" + user.id)
    return user_out(user)


@endpoint("GET", "/users", summary="The directory of people (for building teams)",
          tag="directory", action=None, response=UserList)
def list_users():
    rows = db.session.execute(select(User).where(User.disabled.is_(False))
                              .order_by(User.display_name)).scalars()
    admin = current_user.is_admin
    return {"items": [user_out(u) if admin else
                      {k: v for k, v in user_out(u).items() if k not in ("login", "totp_enabled")}
                      for u in rows]}


@endpoint("PATCH", "/users/<user_id>", summary="Change, disable or re-enable a user",
          tag="directory", action="directory.user_update", auth="admin", body=UserPatch,
          response=UserOut, errors=(404,))
def update_user(user_id, body):
    user = db.session.get(User, user_id)
    if user is None:
        raise not_found()
    set_audit(detail="user=" + user.id)
    if "display_name" in body:
        user.display_name = body["display_name"]
    if "password" in body:
        user.password_hash = auth.hash_password(body["password"])
        auth.revoke_all(user)
    if body.get("disabled") is True and not user.disabled:
        user.disabled = True
        auth.revoke_all(user)
        from flask import g
        from realtime import disconnect_user
        g.setdefault("after_commit", []).append(lambda: disconnect_user(user.id))
    elif body.get("disabled") is False:
        user.disabled = False
    return user_out(user)
