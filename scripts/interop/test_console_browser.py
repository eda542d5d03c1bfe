"""The console's dashboard in a real browser: headless Chromium driven through Selenium.

Against the real local stack, in a fresh namespace: topics and schemas are provisioned with
`circ`, one consumer group (audit-log) and the console run from target/debug, and traffic is
produced with `circ produce` (valid events) and Confluent's Python client (records whose value is
not Avro: the group dead-letters them as undecodable). The browser signs in with a token, sees
the overview's figures change in place, opens a dead letter, retries it, runs a bulk retry
through its confirmation dialog, traces a dead-lettered event from the search box, and checks
that a viewer is offered no action.

Screenshots of each page, and the logs of the processes, go to target/browser-artifacts/.
"""

import functools
import json
import os
import re
import time
import uuid
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait
from workspace_processes import ROOT, WAIT, Process, circ, free_port, fresh_namespace, now_iso
from workspace_processes import produce_undecodable as shared_produce_undecodable

ARTIFACTS = ROOT / "target" / "browser-artifacts"
CHROMIUM = os.environ.get("CIRC_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("CIRC_CHROMEDRIVER", "/usr/bin/chromedriver")
GROUP = "audit-log"
EVENT_TYPE = "system.health"


# ---- Processes ------------------------------------------------------------------------------

def require_chromium():
    if Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists():
        return
    message = f"{CHROMIUM} or {CHROMEDRIVER} missing (scripts/test installs Debian's chromium and chromium-driver)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


# ---- Fixtures -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def env():
    """A fresh namespace with its topics and schemas; its topics are deleted afterwards."""
    require_chromium()
    with fresh_namespace(ARTIFACTS) as env:
        yield env


@pytest.fixture(scope="module")
def group(env):
    port = free_port()
    process = Process(GROUP, dict(env, CIRC_HANDLER_LISTEN=f"127.0.0.1:{port}",
                                  CIRC_INSTANCE_ID=f"{GROUP}-0"), port, ARTIFACTS)
    try:
        process.wait_ready()
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="module")
def console(env, group):
    """The console's base URL."""
    port = free_port()
    process = Process("console", dict(env, CIRC_CONSOLE_LISTEN=f"127.0.0.1:{port}", CIRC_CONSOLE_REFRESH="1s"),
                      port, ARTIFACTS)
    try:
        process.wait_ready()
        yield process.base
    finally:
        process.stop()


@pytest.fixture(scope="module")
def tokens(env):
    return {role: circ(env, "token", "--sub", f"browser-{role}", "--role", role).strip()
            for role in ("operator", "viewer")}


@pytest.fixture(scope="module")
def browser(env):
    options = Options()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     "--window-size=1600,1000"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER, log_output=str(ARTIFACTS / "chromedriver.log")),
                              options=options)
    driver.set_page_load_timeout(WAIT)
    driver.set_script_timeout(WAIT)
    try:
        yield driver
    finally:
        try:
            logs = driver.get_log("browser")
            (ARTIFACTS / "browser-console.log").write_text("\n".join(json.dumps(e) for e in logs))
        finally:
            driver.quit()


# ---- Traffic --------------------------------------------------------------------------------

def produce_valid(env, count):
    for i in range(count):
        data = {"component": "browser-test", "status": "HEALTHY",
                "instance": f"{env['CIRC_NAMESPACE']}-{uuid.uuid4().hex[:8]}",
                "details": {"probe": "browser", "n": str(i)}, "checkedAt": now_iso()}
        circ(env, "produce", EVENT_TYPE, "--data", json.dumps(data))


def produce_undecodable(env, count):
    return shared_produce_undecodable(env, count, EVENT_TYPE, "/tests/browser")


# ---- Browser steps --------------------------------------------------------------------------

def wait(driver, condition, message, timeout=WAIT, stale_ok=True):
    ignored = (NoSuchElementException, StaleElementReferenceException) if stale_ok else (NoSuchElementException,)
    return WebDriverWait(driver, timeout, poll_frequency=0.25, ignored_exceptions=ignored).until(condition, message)


def css(scope, selector):
    return scope.find_element(By.CSS_SELECTOR, selector)


def all_css(scope, selector):
    return scope.find_elements(By.CSS_SELECTOR, selector)


def number(text):
    return int(text.replace(",", ""))


def shot(driver, name):
    """A screenshot of the whole page (the window grown to its height, then put back)."""
    height = driver.execute_script("return Math.max(document.documentElement.scrollHeight, document.body.scrollHeight)")
    driver.set_window_size(1600, min(max(int(height) + 40, 1000), 6000))
    driver.execute_script("window.scrollTo(0, 0)")
    time.sleep(0.2)
    driver.save_screenshot(str(ARTIFACTS / f"{name}.png"))
    driver.set_window_size(1600, 1000)


def sign_in(driver, base, token, role):
    """Signs in with `token` unless already signed in with `role`."""
    if not driver.current_url.startswith(base):
        driver.get(f"{base}/")
    wait(driver, lambda d: css(d, "#sign-in").is_displayed() or css(d, "#who").is_displayed(), "neither the sign-in form nor who is signed in shows")
    if css(driver, "#who").is_displayed():
        if css(driver, '[data-test="who-role"]').text == role:
            return
        click(driver, '[data-test="sign-out"]')
        wait(driver, lambda d: css(d, "#sign-in").is_displayed(), "sign-out did not show the sign-in form")
    css(driver, '[data-test="token"]').send_keys(token)
    click(driver, '[data-test="sign-in"]')
    wait(driver, lambda d: css(d, '[data-test="who-role"]').text == role, f"not signed in as {role}")


def click(driver, selector):
    """Clicks the element at the middle of the window (not at its edge, under a message)."""
    element = css(driver, selector)
    driver.execute_script("arguments[0].scrollIntoView({block: 'center', inline: 'nearest'})", element)
    element.click()


def go(driver, base, route):
    driver.get(f"{base}/#{route}")


def flash_text(driver):
    return css(driver, '[data-test="flash-text"]').text


def keeps_evidence(test):
    """On failure, saves the page as it was (`<test>-failure.png`, its text); starts each test
    with no dialog open, so one failure does not block the next test's clicks."""
    @functools.wraps(test)
    def run(**fixtures):
        driver = fixtures["browser"]
        driver.execute_script("const d = document.getElementById('dialog'); if (d && d.open) d.close();")
        try:
            return test(**fixtures)
        except BaseException:
            name = test.__name__.removeprefix("test_")
            try:
                driver.save_screenshot(str(ARTIFACTS / f"{name}-failure.png"))
                (ARTIFACTS / f"{name}-failure.txt").write_text(driver.execute_script("return document.body.innerText"))
            except Exception:  # noqa: BLE001 - the failure itself matters more
                pass
            raise
    return run


# ---- Tests ----------------------------------------------------------------------------------

@keeps_evidence
def test_sign_in_then_the_overview_updates_in_place(browser, console, tokens, env):
    browser.get(f"{console}/")
    wait(browser, lambda d: css(d, '[data-test="sign-in-form"]').is_displayed(), "no sign-in form for a new browser")
    shot(browser, "sign-in")
    css(browser, '[data-test="token"]').send_keys("not-a-token")
    click(browser, '[data-test="sign-in"]')
    wait(browser, lambda d: css(d, '[data-test="sign-in-error"]').text != "", "a bad token shows no error")
    css(browser, '[data-test="token"]').clear()
    sign_in(browser, console, tokens["operator"], "operator")
    assert css(browser, '[data-test="who-sub"]').text == "browser-operator"

    go(browser, console, "/")
    row = f'[data-test="group-row"][data-group="{GROUP}"]'
    completed = wait(browser, lambda d: css(d, f'{row} [data-test="completed"]'), "no row for the group")
    wait(browser, lambda d: completed.text not in ("", "—"), "the completed figure never shows")
    before = number(completed.text)
    browser.execute_script("window.__sameDocument = 'yes'")

    produce_valid(env, 3)
    # The very same cell changes: a re-render or a reload would make it stale and fail here.
    wait(browser, lambda d: number(completed.text) >= before + 3,
         f"the completed figure did not grow by 3 from {before}", stale_ok=False)
    assert browser.execute_script("return window.__sameDocument") == "yes", "the page was reloaded"
    assert css(browser, f'{row} [data-test="health"]').get_attribute("data-status")
    assert css(browser, f'{row} [data-test="spark-lag"] svg'), "no lag sparkline"
    shot(browser, "overview")

    # Polling: every 2 s at most.
    browser.execute_script("performance.clearResourceTimings()")
    time.sleep(6.5)
    fetched = browser.execute_script(
        "return performance.getEntriesByType('resource').filter(e => e.name.endsWith('/admin/circulatory/queues')).length")
    assert 2 <= fetched <= 4, f"{fetched} refreshes of the overview in 6.5 s"


@keeps_evidence
def test_group_events_realtime_and_topology_pages(browser, console, tokens):
    sign_in(browser, console, tokens["operator"], "operator")
    go(browser, console, "/")
    wait(browser, lambda d: css(d, f'[data-test="group-row"][data-group="{GROUP}"] [data-test="group-link"]'), "no group link").click()
    wait(browser, lambda d: css(d, '[data-test="group-name"]').text == GROUP, "the group page did not open")
    wait(browser, lambda d: len(all_css(d, '[data-test="partition-row"]')) > 0, "no partition rows")
    wait(browser, lambda d: len(all_css(d, '[data-test="member-row"]')) > 0, "no member rows")
    # Pause with a reason, then resume: the page shows who paused it, then nothing.
    click(browser, '[data-test="pause"]')
    wait(browser, lambda d: css(d, '[data-test="dialog"]').is_displayed(), "no pause dialog")
    css(browser, '[data-test="reason"]').send_keys("browser test")
    click(browser, '[data-test="confirm"]')
    wait(browser, lambda d: "Paused by browser-operator" in css(d, '[data-test="control"]').text
         and "browser test" in css(d, '[data-test="control"]').text, "the pause does not show")
    wait(browser, lambda d: css(d, '[data-test="group-health"] [data-test="health"]').get_attribute("data-status") == "paused",
         "the health does not say paused")
    click(browser, '[data-test="resume"]')
    wait(browser, lambda d: css(d, '[data-test="dialog"]').is_displayed(), "no resume dialog")
    click(browser, '[data-test="confirm"]')
    wait(browser, lambda d: not css(d, '[data-test="control"]').is_displayed(), "the group stays paused")
    assert css(browser, '[data-test="pause"]').is_displayed()
    click(browser, '[data-test="range-6h"]')
    wait(browser, lambda d: css(d, '[data-test="range-6h"]').get_attribute("aria-pressed") == "true", "range not selected")
    shot(browser, "group")

    go(browser, console, "/events")
    wait(browser, lambda d: css(d, f'[data-test="event-row"][data-type="{EVENT_TYPE}"] [data-test="published"]').text != "",
         "no events table")
    shot(browser, "events")

    go(browser, console, "/realtime")
    wait(browser, lambda d: len(all_css(d, '[data-test="channel-row"]')) > 0, "no channels table")
    shot(browser, "realtime")

    go(browser, console, "/topology")
    wait(browser, lambda d: len(all_css(d, '[data-test="topic-row"]')) > 0, "no topics table")
    wait(browser, lambda d: css(d, f'[data-test="topology-group-row"][data-group="{GROUP}"] [data-test="retry-ladder"]').text.startswith("3 attempts"),
         "no retry ladder for the group")
    shot(browser, "topology")


def open_letters(driver):
    return all_css(driver, '[data-test="dlq-row"][data-state="open"]')


def total_open(driver):
    text = css(driver, '[data-test="dlq-total"]').text
    match = re.match(r"([\d,]+) open", text)
    return number(match.group(1)) if match else -1


@keeps_evidence
def test_dead_letter_details_retry_and_bulk_retry(browser, console, tokens, env):
    sign_in(browser, console, tokens["operator"], "operator")
    produce_undecodable(env, 1)
    go(browser, console, f"/dead-letters?group={GROUP}")
    first = wait(browser, lambda d: (open_letters(d) or [False])[0], "the dead letter never shows")
    letter = first.get_attribute("data-id")
    assert "undecodable" in css(first, '[data-test="error-class"]').text

    # Details, loaded when opened.
    css(first, '[data-test="details"]').click()
    panel = f'[data-test="details-panel"][data-id="{letter}"]'
    wait(browser, lambda d: css(d, f'{panel} [data-test="undecodable"]').is_displayed(), "the details did not load")
    assert css(browser, f'{panel} [data-test="details-type"]').text == EVENT_TYPE
    assert "ce_id" in css(browser, f'{panel} [data-test="details-headers"]').text

    # Edit and retry with data the schema refuses: the field errors show inline.
    editor = css(browser, f'{panel} [data-test="edit-data"]')
    editor.clear()
    editor.send_keys('{"component": 5}')
    click(browser, f'{panel} [data-test="edit-submit"]')
    wait(browser, lambda d: len(all_css(d, f'{panel} [data-test="edit-field-error"]')) > 0, "no field errors for invalid data")
    shot(browser, "dead-letter-details")

    # Retry: the letter leaves the open list.
    click(browser, f'[data-test="dlq-row"][data-id="{letter}"] [data-test="retry"]')
    wait(browser, lambda d: not all_css(d, f'[data-test="dlq-row"][data-id="{letter}"]'), "the retried letter is still listed")
    assert "replayed" in flash_text(browser)

    # Bulk retry: the replayed record comes back (still not Avro), plus four new ones.
    produce_undecodable(env, 4)
    wait(browser, lambda d: total_open(d) >= 5, "the new dead letters never show")
    settled = {"count": -1, "since": time.monotonic()}

    def stable(d):
        n = total_open(d)
        if n != settled["count"]:
            settled.update(count=n, since=time.monotonic())
        return time.monotonic() - settled["since"] >= 3

    wait(browser, stable, "the dead-letter count does not settle")
    expected = settled["count"]
    shot(browser, "dead-letters")

    click(browser, '[data-test="bulk-retry"]')
    wait(browser, lambda d: css(d, '[data-test="dialog"]').is_displayed(), "no confirmation dialog")
    assert number(css(browser, '[data-test="dry-count"]').text) == expected
    assert css(browser, '[data-test="dry-quarantine"]').text == "0"
    assert "undecodable" in css(browser, '[data-test="dry-classes"]').text
    shot(browser, "bulk-confirm")
    click(browser, '[data-test="confirm"]')
    wait(browser, lambda d: css(d, '[data-test="job-status"]').text == "finished", "the bulk job did not finish")
    figures = css(browser, '[data-test="job-figures"]').text
    assert f"{expected} of {expected} done" in figures and f"replayed {expected}" in figures, figures
    shot(browser, "bulk-job")


@keeps_evidence
def test_trace_a_dead_lettered_event_from_the_search_box(browser, console, tokens, env):
    sign_in(browser, console, tokens["viewer"], "viewer")
    go(browser, console, "/")
    (event_id,) = produce_undecodable(env, 1)
    box = css(browser, '[data-test="trace-q"]')
    box.clear()
    box.send_keys(event_id + "\n")
    wait(browser, lambda d: "#/trace?q=" in d.current_url, "the search box did not open the trace")
    row = f'[data-test="trace-group-row"][data-group="{GROUP}"]'
    wait(browser, lambda d: css(d, f'{row} [data-test="trace-status"]').get_attribute("data-status") == "dead_lettered",
         "the trace never shows the group's dead letter")
    where = css(browser, '[data-test="trace-where"]').text
    assert f"{env['CIRC_NAMESPACE']}.admin.high" in where, where
    assert event_id in css(browser, f'[data-test="trace-event"][data-id="{event_id}"]').text
    shot(browser, "trace")

    # From the trace to the group's dead letters, and from a letter's details back to its trace.
    click(browser, f'{row} [data-test="trace-dead-letter"]')
    first = wait(browser, lambda d: (open_letters(d) or [False])[0], "the dead letters did not open")
    css(first, '[data-test="details"]').click()
    link = wait(browser, lambda d: css(d, '[data-test="details-panel"] [data-test="trace-link"]'), "no trace link in the details")
    assert "#/trace?q=" in link.get_attribute("href")

    # An id nobody published: said so, not an error.
    go(browser, console, "/trace?q=never-published")
    wait(browser, lambda d: "Nothing traced" in css(d, '[data-test="trace-summary"]').text, "no answer for an unknown id")


@keeps_evidence
def test_a_viewer_is_offered_no_action(browser, console, tokens):
    sign_in(browser, console, tokens["viewer"], "viewer")
    go(browser, console, f"/dead-letters?group={GROUP}")
    wait(browser, lambda d: len(open_letters(d)) > 0, "a viewer sees no dead letter")
    assert not all_css(browser, '[data-test="retry"]'), "a viewer is offered Retry"
    assert not all_css(browser, '[data-test="bulk-retry"]'), "a viewer is offered a bulk retry"
    assert all_css(browser, '[data-test="details"]'), "a viewer cannot open details"
    # Filters: every state shows the letters decided earlier too.
    Select(css(browser, '[data-test="filter-state"]')).select_by_value("all")
    click(browser, '[data-test="apply-filter"]')
    wait(browser, lambda d: all_css(d, '[data-test="dlq-row"][data-state="replayed"]'), "no replayed letter with state=all")
    assert "state=all" in browser.current_url
    shot(browser, "viewer-dead-letters")
    go(browser, console, f"/groups/{GROUP}")
    wait(browser, lambda d: css(d, '[data-test="group-name"]').text == GROUP, "the group page did not open")
    assert not all_css(browser, '[data-test="pause"]'), "a viewer is offered Pause"
