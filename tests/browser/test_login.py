"""Log-in through Panel's basic auth, in the browser: anonymous users get the log-in
page, a wrong password gets nowhere, a viewer sees the controls disabled and an operator
(named in ``AMQADF_OPERATORS``) may use them; no password ever shows in the page."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import pytest

from .conftest import VIEWPORT, _free_port, int_attr, start_dashboard, stop_dashboard, wait_until

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]

USERS = {"ada": "ada-Pass-8841", "bob": "bob-Pass-1927"}


@pytest.fixture(scope="module")
def login_server():
    data_dir = tempfile.mkdtemp(prefix="amqadf-login-")
    users = Path(data_dir) / "users.json"
    users.write_text(json.dumps(USERS))
    port = _free_port()
    args = ["--basic-auth", str(users), "--cookie-secret", "amqadf-test-cookie-secret-0123456789"]
    proc = start_dashboard(
        port, data_dir, Path(data_dir) / "panel-serve.log", args, {"AMQADF_OPERATORS": "ada"}
    )
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_dashboard(proc)
        shutil.rmtree(data_dir, ignore_errors=True)


def _log_in(browser, base: str, user: str, password: str):
    ctx = browser.new_context(viewport=VIEWPORT)
    page = ctx.new_page()
    page.goto(f"{base}/app", wait_until="domcontentloaded", timeout=45_000)
    assert "/login" in page.url, f"anonymous access must get the log-in page, got {page.url}"
    page.fill("input[name=username]", user)
    page.fill("input[name=password]", password)
    page.locator("input[name=password]").press("Enter")
    page.wait_for_load_state("domcontentloaded")
    return ctx, page


def _open_app(page, base: str) -> None:
    page.goto(f"{base}/app", wait_until="domcontentloaded", timeout=45_000)
    wait_until(
        lambda: (int_attr(page, ".amq-hdr-msgs", "data-msgs") or 0) > 0, 60, what="live data"
    )


def test_wrong_password_gets_nowhere(browser, login_server):
    ctx, page = _log_in(browser, login_server, "bob", "not-the-password")
    try:
        page.goto(f"{login_server}/app", wait_until="domcontentloaded", timeout=45_000)
        assert "/login" in page.url
        assert page.locator(".amq-pause").count() == 0
    finally:
        ctx.close()


@pytest.mark.parametrize(("user", "operator"), [("bob", False), ("ada", True)])
def test_viewers_watch_operators_operate(browser, login_server, user, operator):
    ctx, page = _log_in(browser, login_server, user, USERS[user])
    try:
        _open_app(page, login_server)
        pause = page.locator(".amq-pause button").first
        wait_until(lambda: pause.count() > 0, 30, what="the pause button")
        # the controls follow the status line in a message of their own
        state = page.locator(".amq-state-text").first
        wait_until(
            lambda: state.get_attribute("data-state") == "running", 30, what="controls running"
        )
        assert pause.is_enabled() == operator
        assert page.locator(".amq-history-delete button").first.is_enabled() == operator
        content = page.content()
        assert not [pw for pw in USERS.values() if pw in content], "a password is in the page"
    finally:
        ctx.close()
