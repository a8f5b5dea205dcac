"""Organisations and users (administrators manage; everyone may look people up to
build a team)."""

from flask_login import current_user

from api.pipeline import endpoint
from api.schemas import (
    Invitation,
    InvitationAccept,
    InvitationAccepted,
    OrganizationIn,
    OrganizationList,
    OrganizationOut,
    ResetOut,
    UserCreated,
    UserIn,
    UserList,
    UserOut,
    UserPatch,
    UserQuery,
)
from renkei.people import directory, invitations, resets


@endpoint(
    "POST",
    "/organizations",
    summary="Create an organisation",
    tag="directory",
    action="directory.org_create",
    auth="admin",
    body=OrganizationIn,
    idempotent=True,
    response=OrganizationOut,
    status=201,
)
def create_organization(body):
    return directory.create_organization(current_user, body["name"], body["kind"], body.get("phone"))


@endpoint(
    "GET", "/organizations", summary="List organisations", tag="directory", action=None, response=OrganizationList
)
def list_organizations():
    return {"items": directory.organizations()}


@endpoint(
    "POST",
    "/users",
    summary="Create a user and their invitation (they choose their own password)",
    tag="directory",
    action="directory.user_create",
    auth="admin",
    body=UserIn,
    response=UserCreated,
    status=201,
    errors=(409,),
)
def create_user(body):
    return directory.create_user(
        current_user,
        body.get("login"),
        body["display_name"],
        body["organization_id"],
        body["profession"],
        body["is_admin"],
        body["is_auditor"],
        body.get("phone"),
    )


@endpoint(
    "POST",
    "/users/<user_id>/invitation",
    summary="A new invitation for a person who has not accepted theirs",
    tag="directory",
    action="directory.invite",
    auth="admin",
    response=Invitation,
    status=201,
    errors=(404, 409),
)
def invite_again(user_id):
    return directory.invite_again(current_user, user_id)


@endpoint(
    "POST",
    "/users/<user_id>/confirm",
    summary="Confirm an account another administrator created or changed (the second person)",
    tag="directory",
    action="directory.user_confirm",
    auth="admin",
    response=UserOut,
    errors=(404, 409),
)
def confirm_user(user_id):
    return directory.confirm(current_user, user_id)


@endpoint(
    "POST",
    "/invitations/accept",
    summary="Accept an invitation: choose your password (and login)",
    tag="auth",
    action="auth.invitation_accept",
    auth="public",
    body=InvitationAccept,
    response=InvitationAccepted,
    status=201,
    errors=(404, 409, 410, 429),
)
def accept_invitation(body):
    return {"user_id": invitations.accept(body["code"], body["password"], body.get("login")).id}


@endpoint(
    "GET",
    "/users",
    summary="The directory of people (for building teams)",
    tag="directory",
    action=None,
    query=UserQuery,
    response=UserList,
)
def list_users(query):
    return {"items": directory.people(current_user, words=query.get("q"), limit=query.get("limit"))}


@endpoint(
    "PATCH",
    "/users/<user_id>",
    summary="Change, disable or re-enable a user",
    tag="directory",
    action="directory.user_update",
    auth="admin",
    body=UserPatch,
    response=UserOut,
    errors=(404,),
)
def update_user(user_id, body):
    return directory.update_user(current_user, user_id, body)


@endpoint(
    "POST",
    "/users/<user_id>/unlock",
    summary="Lift a sign-in lock on a person's login",
    tag="directory",
    action="directory.user_unlock",
    auth="admin",
    status=204,
    errors=(404,),
)
def unlock_user(user_id):
    directory.unlock(current_user, user_id)


@endpoint(
    "DELETE",
    "/users/<user_id>/totp",
    summary="Remove a person's lost second factor (they enrol a new one)",
    tag="directory",
    action="directory.totp_reset",
    auth="admin",
    status=204,
    errors=(404, 409),
)
def reset_totp(user_id):
    directory.reset_totp(current_user, user_id)


@endpoint(
    "POST",
    "/users/<user_id>/reset",
    summary="Reset a person's access (a second administrator approves)",
    tag="directory",
    action="directory.reset_request",
    auth="admin",
    response=ResetOut,
    status=201,
    errors=(404, 409),
)
def request_reset(user_id):
    return resets.request(current_user, user_id)  # status: "awaiting_approval" or "approved" (with the code)


@endpoint(
    "POST",
    "/users/<user_id>/reset/<reset_id>/approve",
    summary="Approve another administrator's reset; answers the one-time recovery code",
    tag="directory",
    action="directory.reset_approve",
    auth="admin",
    response=ResetOut,
    status=201,
    errors=(403, 404),
)
def approve_reset(user_id, reset_id):
    return resets.approve(current_user, user_id, reset_id)
