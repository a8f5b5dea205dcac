"""Issue 29, from a walk of the administrator's day, in Debian's Chromium: a new person
gets an invitation link instead of a password the administrator chose; the person sets
their own password (the rules shown before typing) and is asked for a second factor at
their first sign-in; kinds read in Japanese; 停止 asks first; nobody sees a button they
cannot use; a lone administrator is told to reset and confirm on the server."""

import os
import re

import pyotp
import pytest
from playwright.sync_api import expect

from tests.helpers import TABLET, random_master_key
from tests.servers import free_port, start_server

pytestmark = pytest.mark.browser
PASSWORD = "renkei-demo-2026"


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """The embedded default with its demo data, and the folder holding its credentials."""
    folder = tmp_path_factory.mktemp("admin-demo")
    env = {k: v for k, v in os.environ.items() if not k.startswith("RENKEI_")}
    env |= {
        "RENKEI_INSTANCE_DIR": str(folder),
        "RENKEI_PORT": str(free_port()),
        "RENKEI_MASTER_KEY": random_master_key(),
    }
    with start_server(env, timeout=60) as base:
        secret = re.search(r"TOTP secret (\w+)", (folder / "demo-credentials.txt").read_text()).group(1)
        yield base, pyotp.TOTP(secret)


def admin_page(browser, base, totp):
    page = browser.new_context(base_url=base, locale="ja-JP", **TABLET).new_page()
    page.goto("/login")
    page.fill("input[name=login]", "admin")
    page.fill("input[name=password]", PASSWORD)
    page.fill("input[name=otp]", totp.now())
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r".*/$"))
    page.goto("/admin")
    return page


def test_an_administrator_invites_a_nurse_who_chooses_her_own_password(browser, demo):
    base, totp = demo
    page = admin_page(browser, base, totp)
    expect(page.locator("body")).to_contain_text("訪問看護ステーション")  # kinds in Japanese
    assert page.locator("#user-form input[type=password]").count() == 0  # no password to choose
    assert page.locator("text=管理者が1人のため").count() == 1  # a lone administrator is told where to go
    assert page.locator("[data-reset-user]").first.is_disabled()
    assert page.locator("[data-remove-member]").count() == 0

    form = page.locator("#user-form")
    form.locator("input[name=login]").fill("ns.new")
    form.locator("input[name=display_name]").fill("新人 看護")
    form.locator("select[name=organization_id]").select_option(label="さくら訪問看護ステーション")
    form.locator("select[name=profession]").select_option("nurse")
    form.locator("button[type=submit]").tap()
    link = page.locator("#invitation-out a")
    expect(link).to_be_visible()
    url = link.inner_text()
    assert "/invitation#" in url and "?" not in url  # the code in the fragment only

    page.reload()
    row = page.locator("tr", has_text="新人 看護")
    expect(row).to_contain_text("確認待ち")
    expect(row).to_contain_text("招待中")
    assert row.locator("[data-confirm-user]").count() == 0  # she was made by this administrator
    asked = []
    page.once("dialog", lambda dialog: (asked.append(dialog.message), dialog.dismiss()))
    row.locator("[data-disable-user]").tap()
    page.wait_for_timeout(300)
    assert asked and "新人 看護" in asked[0] and "停止" in asked[0]
    expect(row).not_to_contain_text("停止中")  # dismissed: nothing happened

    nurse = browser.new_context(base_url=base, locale="ja-JP", **TABLET).new_page()
    nurse.goto(url)
    expect(nurse.locator("body")).to_contain_text("12文字以上")  # the rule, before typing
    nurse.fill("#invitation-form input[name=password]", "さくらの朝は早い 2026")
    nurse.fill("#invitation-form input[name=again]", "さくらの朝は遅い 2026")
    nurse.locator("#invitation-form button[type=submit]").tap()
    expect(nurse.locator("#invitation-form .status")).to_contain_text("一致しません")
    nurse.fill("#invitation-form input[name=again]", "さくらの朝は早い 2026")
    nurse.locator("#invitation-form button[type=submit]").tap()
    nurse.wait_for_url(re.compile(r".*/login\?invited=1$"))
    nurse.fill("input[name=login]", "ns.new")
    nurse.fill("input[name=password]", "さくらの朝は早い 2026")
    nurse.click("button[type=submit]")
    nurse.goto("/")
    nurse.wait_for_url(re.compile(r".*/account$"))  # a second factor before anything else
    nurse.goto(url)  # the link works once
    nurse.fill("#invitation-form input[name=password]", "もう一度使えるはず 2026")
    nurse.fill("#invitation-form input[name=again]", "もう一度使えるはず 2026")
    nurse.locator("#invitation-form button[type=submit]").tap()
    expect(nurse.locator("#invitation-form .status")).to_contain_text("使用済みか期限切れ")
    nurse.context.close()
    page.context.close()
