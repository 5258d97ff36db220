"""The console in a real headless Chromium: a scripted agent session, keyboard use, no
request leaving the server, screenshots.

Needs Debian's ``chromium`` and ``chromium-driver`` and pip's ``selenium`` (the
``console-test`` extra); Selenium is pointed at the system driver, so nothing is
downloaded. Screenshots go to ``$SLMSTACK_TEST_ARTIFACTS/console`` (default: the system
temporary folder), never into the repository.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from console_server import ANA_KEY, BEN_KEY, start
from slmstack.cli.app import app as cli
from slmstack.workflows import Inbox, Packet

pytestmark = pytest.mark.slow

CHROMIUM = os.environ.get("SLMSTACK_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("SLMSTACK_CHROMEDRIVER", "/usr/bin/chromedriver")
ARTIFACTS = Path(os.environ.get("SLMSTACK_TEST_ARTIFACTS", tempfile.gettempdir())) / "console"


def _missing() -> str | None:
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "pip install -e '.[console-test]' (selenium)"
    for path in (CHROMIUM, CHROMEDRIVER):
        if not shutil.which(path):
            return f"{path} is missing: apt-get install -y chromium chromium-driver"
    return None


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    monkeypatch = pytest.MonkeyPatch()
    running = start(tmp_path_factory.mktemp("console"), monkeypatch)
    yield running
    running.stop()
    monkeypatch.undo()


@pytest.fixture(scope="module")
def browser():
    missing = _missing()
    if missing is not None:
        if os.environ.get("CI"):
            pytest.fail(f"the browser tests need Chromium and Selenium: {missing}")
        pytest.skip(missing)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                "--window-size=1360,1000", "--disable-background-networking",
                "--disable-component-update", "--no-first-run"):  # fmt: skip
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.implicitly_wait(5)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    yield driver
    driver.quit()


def _requested(driver) -> list[str]:
    """Every URL the pages asked for since the last call (the DevTools network log)."""
    urls = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return urls


def _shot(driver, name: str) -> None:
    """A screenshot of the whole page (the window grown to its height for the shot)."""
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1360, max(1000, min(int(height) + 120, 4000)))
    driver.save_screenshot(str(ARTIFACTS / f"{name}.png"))
    driver.set_window_size(1360, 1000)


def _refused(driver) -> list[str]:
    """What the browser refused to load or run: CSP violations, script errors.

    (A 401 or 409 page is logged as a failed load too: those are answers, not refusals.)
    """
    return [
        e["message"] for e in driver.get_log("browser")
        if e["level"] == "SEVERE" and "the server responded with a status of" not in e["message"]
    ]  # fmt: skip


def _wait_url(driver, text: str) -> None:
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, 10).until(expected_conditions.url_contains(text))


def _wait_title(driver, text: str) -> None:
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, 10).until(expected_conditions.title_contains(text))


def test_an_agent_claims_resolves_with_a_label_and_the_example_is_exported(
    server, browser, tmp_path
):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    requested: list[str] = []
    browser.get(f"{server.url}/console")
    assert "Sign in" in browser.title  # a 401 whose body is the sign-in form
    button = browser.find_element(By.CSS_SELECTOR, "form button[type=submit]")
    assert button.value_of_css_property("background-color") == "rgba(47, 91, 211, 1)"  # styled
    _shot(browser, "01-sign-in")
    browser.find_element(By.ID, "key").send_keys("not-the-key-0000000000")
    browser.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
    assert "not accepted" in browser.find_element(By.CSS_SELECTOR, ".alert").text
    browser.find_element(By.ID, "key").send_keys(ANA_KEY + Keys.ENTER)
    _wait_title(browser, "Inbox")
    assert browser.current_url.endswith("/console/inbox")
    assert "Signed in as ana" in browser.find_element(By.CSS_SELECTOR, ".me").text
    rows = browser.find_elements(By.CSS_SELECTOR, "table.packets tbody tr")
    assert len(rows) == 3  # two filed by hand, one by a real run
    _shot(browser, "02-inbox")

    # Search narrows the list; the keyboard opens a packet.
    browser.find_element(By.TAG_NAME, "body").send_keys("/")
    assert browser.switch_to.active_element.get_attribute("id") == "q"
    browser.switch_to.active_element.send_keys("charged twice" + Keys.ENTER)
    _wait_url(browser, "q=charged")
    rows = browser.find_elements(By.CSS_SELECTOR, "table.packets tbody tr")
    assert len(rows) == 1 and "charged twice" in rows[0].text
    browser.find_element(By.TAG_NAME, "body").send_keys("j")
    browser.switch_to.active_element.send_keys(Keys.ENTER)
    _wait_url(browser, "/console/inbox/")
    packet_id = int(browser.current_url.rsplit("/", 1)[1].split("?")[0])
    page = browser.find_element(By.TAG_NAME, "main").text
    for shown in ("charged twice", "complaint", "refund", "negative", "ORDER", "4417",
                  "double-charged", "triage", "confidence 0.41 < threshold 0.55"):  # fmt: skip
        assert shown in page, shown
    _shot(browser, "03-packet")

    browser.find_element(By.XPATH, "//button[text()='Claim this packet']").click()
    _wait_url(browser, "done=claimed")
    assert "You claimed this packet" in browser.find_element(By.CSS_SELECTOR, ".alert.ok").text
    # A second agent cannot take it, from the API or from the console.
    ben = {"Authorization": f"Bearer {BEN_KEY}"}
    api = httpx.post(f"{server.url}/v1/inbox/{packet_id}/claim", json={"who": "ben"}, headers=ben)
    assert api.status_code == 409
    console = httpx.post(f"{server.url}/console/inbox/{packet_id}/claim", headers=ben)
    assert console.status_code == 409 and "claimed by &#39;ana&#39;" in console.text

    browser.find_element(By.ID, "reply-text").send_keys("Sorry! The second charge is refunded.")
    browser.find_element(By.ID, "reply-text").send_keys(Keys.CONTROL, Keys.ENTER)
    _wait_url(browser, "done=replied")
    assert "The second charge is refunded" in browser.find_element(By.CSS_SELECTOR, ".thread").text
    browser.find_element(By.ID, "note").send_keys("Refunded the duplicate charge.")
    browser.find_element(By.ID, "label").send_keys("refund")
    browser.find_element(By.XPATH, "//button[text()='Resolve']").click()
    _wait_url(browser, "done=labelled")
    assert "saved as a training example" in browser.find_element(By.CSS_SELECTOR, ".alert.ok").text
    assert "resolved" in browser.find_element(By.CSS_SELECTOR, "h1 .badge").text
    _shot(browser, "04-resolved")
    requested += _requested(browser)

    browser.find_element(By.LINK_TEXT, "Training examples").click()
    table = browser.find_element(By.CSS_SELECTOR, "main table").text
    assert "charged twice" in table and "refund" in table and "ana" in table
    _shot(browser, "05-examples")

    out = tmp_path / "examples.jsonl"
    result = CliRunner().invoke(
        cli, ["inbox", "export-examples", "--db", server.inbox_url, "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["label"], r["packet_id"], r["labelled_by"]) for r in rows] == [
        ("refund", packet_id, "ana")
    ]
    assert rows[0]["text"].startswith("I was charged twice")
    requested += _requested(browser)

    # The playground runs a workflow and shows its steps.
    browser.get(f"{server.url}/console/playground")
    box = browser.find_element(By.ID, "pg-text")
    box.send_keys("please refund my order")
    box.send_keys(Keys.CONTROL, Keys.ENTER)
    result_text = browser.find_element(By.ID, "run-result").text
    assert "completed" in result_text and "We will handle your refund request." in result_text
    assert browser.find_elements(By.CSS_SELECTOR, "table.steps tbody tr")
    _shot(browser, "06-playground")

    browser.get(f"{server.url}/console/reports")
    assert len(browser.find_elements(By.CSS_SELECTOR, "svg.chart")) == 3
    assert "spend.html" in browser.find_element(By.TAG_NAME, "main").text
    _shot(browser, "07-reports")
    browser.find_element(By.CSS_SELECTOR, "svg.chart")  # the page's charts are inline SVG
    requested += _requested(browser)
    resources = browser.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name)"
    )

    # Nothing any page asked for left this server.
    outside = [u for u in requested + resources if not u.startswith((server.url, "data:"))]
    assert requested and not outside, outside

    # Nothing was refused either: no CSP violation (the sign-in page's inline CSS included).
    assert _refused(browser) == []

    browser.find_element(By.XPATH, "//button[text()='Sign out']").click()
    _wait_title(browser, "Sign in")
    browser.get(f"{server.url}/console/inbox")
    assert "Sign in" in browser.title


def test_an_empty_inbox_says_so_and_errors_say_what_to_do(server, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    browser.get(f"{server.url}/console/inbox")
    if "Sign in" in browser.title:
        browser.find_element(By.ID, "key").send_keys(BEN_KEY + Keys.ENTER)
        _wait_title(browser, "Inbox")  # signed in before the next page is asked for
    browser.get(f"{server.url}/console/inbox?q=no-such-words-anywhere")
    assert "No open packets match" in browser.find_element(By.CSS_SELECTOR, ".empty").text
    browser.get(f"{server.url}/console/inbox/999")
    assert "There is no packet 999" in browser.find_element(By.CSS_SELECTOR, ".alert").text
    browser.get(f"{server.url}/console/playground")
    browser.execute_script("document.getElementById('pg-text').removeAttribute('required')")
    browser.find_element(By.XPATH, "//button[text()='Run']").click()
    assert "type a customer message" in browser.find_element(By.CSS_SELECTOR, ".alert").text.lower()
    _shot(browser, "08-playground-error")
    # Every control has a label.
    for path in ("/console/inbox", "/console/playground", "/console/reports"):
        browser.get(server.url + path)
        unlabeled = browser.execute_script(
            "return [...document.querySelectorAll('input:not([type=hidden]), select, textarea')]"
            ".filter(e => !e.labels || !e.labels.length).map(e => e.outerHTML)"
        )
        assert unlabeled == [], (path, unlabeled)


def test_a_long_unbroken_text_wraps_inside_the_packet_page(server, browser):
    """A customer pastes a tracking URL: it wraps in its panel, the page never scrolls
    sideways, and the right-hand column stays where it is."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    url = "https://example.com/track?id=" + "A1b2C3d4" * 300
    packet = Packet(workflow="desk", text=f"see {url}", reason="r" * 400, why=url, summary=url,
                    entities=({"label": "URL", "text": url},),
                    trace=[{"name": "intent", "kind": "skill", "output": {"text": url},
                            "decision": {"taken": "human", "why": url}}])  # fmt: skip
    packet_id = Inbox(server.inbox_url).add(packet)
    browser.get(f"{server.url}/console/inbox/{packet_id}")
    if "Sign in" in browser.title:
        browser.find_element(By.ID, "key").send_keys(BEN_KEY + Keys.ENTER)
        _wait_title(browser, "Packet")
    wide, window = browser.execute_script(
        "return [document.documentElement.scrollWidth, document.documentElement.clientWidth]"
    )
    assert wide <= window, "the packet page scrolls sideways"
    _shot(browser, "09-long-text")
