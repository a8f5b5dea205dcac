"""Issue 32: passkeys in the pages, with Chromium's virtual authenticator (DevTools
WebAuthn domain: an internal authenticator with user verification): register one on
the account page, sign out, sign in with 「パスキーでログイン」 without typing a login,
remove it. At 127.0.0.1 the sign-in page says where passkeys work instead."""

import re

import pytest

from tests.helpers import TABLET

DEMO_PASSWORD = "renkei-demo-2026"


def with_authenticator(page):
    cdp = page.context.new_cdp_session(page)
    cdp.send("WebAuthn.enable")
    options = {
        "protocol": "ctap2",
        "transport": "internal",
        "hasResidentKey": True,
        "hasUserVerification": True,
        "isUserVerified": True,
        "automaticPresenceSimulation": True,
    }
    return cdp, cdp.send("WebAuthn.addVirtualAuthenticator", {"options": options})["authenticatorId"]


@pytest.mark.browser
def test_a_passkey_is_added_on_the_account_page_signs_in_without_a_login_and_is_removed(browser, demo_server):
    local = demo_server.replace("127.0.0.1", "localhost")
    page = browser.new_context(base_url=local, locale="ja-JP", **TABLET).new_page()
    cdp, authenticator = with_authenticator(page)
    page.goto("/login")
    page.fill("input[name=login]", "ns.suzuki")
    page.fill("input[name=password]", DEMO_PASSWORD)
    page.click("form.stack button[type=submit]")
    page.wait_for_url(re.compile(r".*/$"))
    page.goto("/account")
    page.fill("#passkey-add input[name=name]", "iPad 訪問用")
    page.click("#passkey-add button[type=submit]")
    page.wait_for_selector("#passkeys li[data-passkey]:has-text('iPad 訪問用')")
    stored = cdp.send("WebAuthn.getCredentials", {"authenticatorId": authenticator})["credentials"]
    assert len(stored) == 1 and stored[0]["isResidentCredential"]

    page.click("header form[action='/logout'] button")
    page.wait_for_url(re.compile(r".*/login.*"))
    page.click("[data-passkey-login]")  # no login, no password typed
    page.wait_for_url(re.compile(r".*/$"))
    assert page.locator(".patient-list li[data-patient]").count() >= 1
    page.goto("/account")
    assert "—" not in page.locator("#passkeys li[data-passkey]").inner_text()  # last used: now

    page.once("dialog", lambda d: d.accept())
    page.click("[data-passkey-remove]")
    page.wait_for_selector("#passkeys li.empty")
    page.context.close()


@pytest.mark.browser
def test_at_an_ip_address_the_sign_in_page_says_where_passkeys_work(browser, demo_server):
    page = browser.new_context(base_url=demo_server, locale="ja-JP", **TABLET).new_page()
    page.goto("/login")
    assert page.locator("[data-passkey-login]").count() == 0
    hint = page.locator(".passkey-signin .hint").inner_text()
    assert "http://localhost:" in hint and "IPアドレス" in hint
    page.context.close()
