"""Reaching people outside the app: their devices' push subscriptions, what they want
to hear of, and their e-mail address (docs/API.md, "Push and e-mail")."""

from flask_login import current_user

from api.pipeline import endpoint
from api.schemas import (
    EmailChange,
    EmailConfirm,
    NotificationSettingsIn,
    NotificationSettingsOut,
    PushSubscriptionIn,
    PushSubscriptionList,
    PushSubscriptionOut,
    VapidKey,
)
from renkei.outreach import tell, webpush


def _me():
    return current_user._get_current_object()


@endpoint(
    "GET",
    "/push/vapid-public-key",
    summary="The key a browser subscribes to pushes with (VAPID)",
    tag="push",
    action=None,
    auth="public",
    response=VapidKey,
)
def vapid_public_key():
    return {"public_key": webpush.public_key()}


@endpoint(
    "POST",
    "/push/subscriptions",
    summary="Receive pushes on this device (the browser's PushSubscription)",
    tag="push",
    action="push.subscribe",
    body=PushSubscriptionIn,
    response=PushSubscriptionOut,
    status=201,
    errors=(409, 422),
)
def subscribe(body):
    out, created = webpush.subscribe(_me(), body)
    return out, 201 if created else 200


@endpoint(
    "GET",
    "/push/subscriptions",
    summary="My devices that receive pushes",
    tag="push",
    action=None,
    response=PushSubscriptionList,
)
def subscriptions():
    return {"items": webpush.subscriptions(_me())}


@endpoint(
    "DELETE",
    "/push/subscriptions/<subscription_id>",
    summary="Stop pushes to one of my devices",
    tag="push",
    action="push.unsubscribe",
    status=204,
    errors=(404,),
)
def unsubscribe(subscription_id):
    webpush.unsubscribe(_me(), subscription_id)


@endpoint(
    "GET",
    "/users/me/notifications",
    summary="What I am told of, and how",
    tag="push",
    action=None,
    response=NotificationSettingsOut,
)
def notification_settings():
    return tell.settings_out(_me())


@endpoint(
    "PUT",
    "/users/me/notifications",
    summary="Change what I am told of (fields left out keep their value)",
    tag="push",
    action="notifications.update",
    body=NotificationSettingsIn,
    response=NotificationSettingsOut,
    errors=(422,),
)
def update_notification_settings(body):
    return tell.update_settings(_me(), body)


@endpoint(
    "PUT",
    "/users/me/email",
    summary="Change my e-mail address: a link to confirm it is mailed there",
    tag="push",
    action="account.email",
    body=EmailChange,
    response=NotificationSettingsOut,
    status=202,
    errors=(409, 422, 429),
)
def change_email(body):
    return tell.change_email(_me(), body["address"])


@endpoint(
    "POST",
    "/users/me/email/confirm",
    summary="Confirm my new e-mail address with the code from its link",
    tag="push",
    action="account.email_confirm",
    body=EmailConfirm,
    response=NotificationSettingsOut,
    errors=(422,),
)
def confirm_email(body):
    return tell.confirm_email(_me(), body["code"])
