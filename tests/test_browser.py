"""The dashboard in a real headless Chromium (Debian's, driven by Playwright) against the real
service: daphne, a worker cluster and the Docker engine. Screenshots go to artifacts/screenshots."""

from __future__ import annotations

import re
import statistics

import pytest
import requests
from django.contrib.auth.models import User
from playwright.sync_api import Browser, Page, expect

from executions.models import DeadLetter, Environment, Execution
from tests.support import SCREENSHOTS, multipart_body

PASSWORD = "pw-for-browser-tests"
FIVE_LINES = """import json, time
for i in range(5):
    print('line', i, repr(time.time()), flush=True)
    time.sleep(1)
json.dump({'lines': 5, 'nested': {'ok': True}}, open('/output/result.json', 'w'))
"""
# Records when each "line N <time printed>" first shows in #stdout, to measure print -> screen.
WATCH_LINES = """
window.__seen = {};
new MutationObserver(() => {
  const out = document.getElementById('stdout');
  if (!out) return;
  for (const row of out.textContent.split('\\n')) {
    const m = row.match(/^line (\\d) ([0-9.]+)$/);
    if (m && !(m[1] in window.__seen)) window.__seen[m[1]] = Date.now() / 1000 - parseFloat(m[2]);
  }
}).observe(document, {subtree: true, childList: true, characterData: true});
"""


CITIES = ["Lisbon", "Porto", "Braga", "Faro", "Evora"]
SALES_CSV = "city,sales\n" + "".join(f"{city},{10 * (n + 1)}\n" for n, city in enumerate(CITIES))
SALES_CSV += "<script>window.__pwned = 'csv'</script>,1\n"
# Plots the uploaded CSV and displays it; then tries every way to get a script into the page: printed,
# in a table cell (pandas escapes it), and as raw HTML written straight to the display file (as a
# hostile program could), which the page may show only inside its sandboxed frame.
PLOT_AND_DISPLAY = """import json, os
import pandas as pd
import matplotlib.pyplot as plt
from tako import display
df = pd.read_csv('/input/data/sales.csv')
df.plot(x='city', y='sales', kind='bar', legend=False)
display(df)
print("<script>window.__pwned = 'stdout'; document.title = 'pwned'</script>")
raw = "<p id='inside'>raw</p><script>document.body.innerHTML += '<p id=ran>ran</p>'; parent.__pwned = 'frame'</script>"
os.write(int(os.environ['TAKO_DISPLAY_FD']), (json.dumps({'mime': 'text/html', 'data': raw}) + '\\n').encode())
"""


def shot(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


@pytest.fixture
def admin_page(live_service, page: Page) -> Page:
    User.objects.create_user("admin", password=PASSWORD, is_staff=True, is_superuser=True)
    page.set_default_timeout(30_000)
    page.goto(f"{live_service.url}/ui/login/")
    page.fill("#id_username", "admin")
    page.fill("#id_password", PASSWORD)
    page.click("main button[type=submit]")
    expect(page.locator("h1")).to_have_text("Executions")
    return page


def fill_code(page: Page, code: str) -> None:
    """Replace the text of the New page's code editor (CodeMirror), as typed into it."""
    editor = page.locator("#run-form .cm-content")
    editor.click()
    page.keyboard.press("ControlOrMeta+a")
    page.keyboard.insert_text(code)
    expect(editor).to_contain_text(code.splitlines()[-1].strip())


def run_from_the_form(page: Page, url: str, code: str, job_type: str = "default") -> None:
    page.goto(f"{url}/ui/new/")
    fill_code(page, code)
    page.select_option("#job_type", job_type)
    page.click("#run-form button[type=submit]")
    page.wait_for_url("**/ui/executions/*/")


def test_watch_a_job_live_then_fork_it(live_service, admin_page: Page, capsys) -> None:
    page, url = admin_page, live_service.url
    page.add_init_script(WATCH_LINES)
    run_from_the_form(page, url, FIVE_LINES)
    expect(page.locator("#stdout")).to_contain_text("line 1", timeout=15_000)
    expect(page.locator("#status")).to_have_text("Running")  # the first lines are there before the end
    shot(page, "1-execution-running")
    expect(page.locator("#status")).to_have_text("Succeeded", timeout=30_000)
    expect(page.locator("#result pre.json")).to_contain_text('"nested": {')
    expect(page.locator("#stdout")).to_contain_text("line 4")
    assert page.locator("#stdout").inner_text().count("line 2") == 1  # nothing duplicated
    shot(page, "2-execution-succeeded")
    delays = [d for n, d in page.evaluate("window.__seen").items() if n != "0"]  # line 0 may precede the page
    assert len(delays) == 4
    median_ms, max_ms = statistics.median(delays) * 1000, max(delays) * 1000
    with capsys.disabled():
        print(f"\nprint -> line on screen: median {median_ms:.0f} ms, max {max_ms:.0f} ms")
    assert max(delays) < 1.0

    page.click("text=Fork")
    expect(page.locator("h1")).to_contain_text("Fork of")
    fill_code(page, "import json\nprint('forked', json.load(open('/input/data.json')))")
    page.click("#run-form button[type=submit]")
    page.wait_for_url("**/ui/executions/*/")
    expect(page.locator("#status")).to_have_text("Succeeded", timeout=30_000)
    expect(page.locator("#stdout")).to_have_text("forked {}\n")
    expect(page.locator(".meta")).to_contain_text("fork of")
    shot(page, "3-forked")


RECORD_CSP_VIOLATIONS = """
window.__csp = [];
document.addEventListener('securitypolicyviolation',
  e => window.__csp.push(`${location.pathname}: ${e.violatedDirective} ${e.blockedURI}`));
"""


def test_every_page_works_under_a_strict_content_security_policy(live_service, admin_page: Page) -> None:
    """script-src and style-src 'self', no inline code: each page, the live log and /docs run with
    no violation (a blocked script or style would be reported here, not silently missing)."""
    page, url = admin_page, live_service.url
    page.add_init_script(RECORD_CSP_VIOLATIONS)
    violations: list[str] = []
    header = requests.get(f"{url}/ui/login/", timeout=10).headers["Content-Security-Policy"]
    assert "script-src 'self'" in header and "style-src 'self'" in header and "frame-ancestors 'none'" in header
    run_from_the_form(
        page, url, "import time\nfor i in range(3):\n    print('tick', i, flush=True)\n    time.sleep(0.5)"
    )
    expect(page.locator("#stdout")).to_contain_text("tick 2", timeout=20_000)  # the live log, over its websocket
    expect(page.locator("#status")).to_have_text("Succeeded", timeout=30_000)
    violations += page.evaluate("window.__csp")
    for path, ready in [
        ("/ui/executions/", "h1"),
        ("/ui/new/", "#run-form .cm-editor"),  # the editor, with its styles
        ("/ui/ops/", "#status-panel"),
        ("/ui/audit/", "#audit"),
        ("/docs", ".swagger-ui .info"),
        ("/admin/", "#content"),
    ]:
        page.goto(f"{url}{path}")
        expect(page.locator(ready).first).to_be_visible(timeout=20_000)
        page.wait_for_timeout(300)  # late scripts (htmx polling, Swagger UI rendering)
        violations += page.evaluate("window.__csp")
    assert violations == []


def test_invalid_input_is_shown_inline_and_nothing_is_sent(live_service, admin_page: Page) -> None:
    page = admin_page
    page.goto(f"{live_service.url}/ui/new/")
    fill_code(page, "print(1)")
    page.fill("#input_data", "{broken")
    page.click("#run-form button[type=submit]")
    expect(page.locator("#input_data-error")).to_contain_text("Input is not valid JSON")
    expect(page).to_have_url(f"{live_service.url}/ui/new/")
    page.fill("#input_data", "{}")
    fill_code(page, "   ")
    page.click("#run-form button[type=submit]")
    expect(page.locator("#code-error")).to_have_text("Code cannot be empty")
    fill_code(page, "print(1)")  # the editor again, over the form the server sent back
    page.fill("#startup_timeout", "5")
    page.fill("#requirements", "numpy\nhttps://example.invalid/x.whl")
    page.click("#run-form button[type=submit]")
    expect(page.locator("#startup_timeout-error")).to_have_text("startup_timeout must be between 10 and 600 seconds")
    expect(page.locator("#requirements-error")).to_contain_text("Invalid requirement 'https://example.invalid/x.whl'")
    expect(page.locator("#code-error")).to_have_text("")
    shot(page, "4-form-errors")


def test_triage_the_dead_letter_queue(live_service, admin_page: Page) -> None:
    page, url = admin_page, live_service.url
    Environment.objects.create(name="unbuilt-browser-env")  # no image: its jobs fail with internal_error
    run_from_the_form(page, url, "print('never runs')", job_type="unbuilt-browser-env")
    expect(page.locator("#status")).to_have_text("Failed", timeout=30_000)
    expect(page.locator(".error-box")).to_contain_text("dead letter queue")
    entry = DeadLetter.objects.get()
    page.on("dialog", lambda dialog: dialog.accept())  # the confirmations
    page.goto(f"{url}/ui/ops/")
    row = page.locator(f"#dlq-{entry.pk}")
    expect(row).to_contain_text("internal_error")
    row.get_by_role("button", name="Inspect").click()
    expect(page.locator("#dlq-entry")).to_contain_text("print('never runs')")
    row.get_by_role("button", name="Requeue").click()
    expect(page.locator("#toasts")).to_contain_text("Requeued 1 entry")
    expect(page.locator(f"#dlq-{entry.pk}")).to_contain_text("by admin")
    shot(page, "5-dlq-requeued")
    page.locator(f"#dlq-{entry.pk}").get_by_role("button", name="Delete").click()
    expect(page.locator("#toasts")).to_contain_text("Deleted 1 entry")
    expect(page.locator(f"#dlq-{entry.pk}")).to_have_count(0)


def test_the_breaker_panel_follows_docker(live_service, docker_proxy, admin_page: Page) -> None:
    page, url = admin_page, live_service.url
    page.goto(f"{url}/ui/ops/")
    expect(page.locator("#breaker-state")).to_have_text("closed")
    docker_proxy.down()
    try:
        for n in range(3):
            requests.post(f"{url}/execute/async", json={"code": f"print({n})"}, timeout=10)
        expect(page.locator("#breaker-state")).to_have_text("open", timeout=30_000)
        expect(page.locator("#docker-available")).to_have_text("unavailable")
        shot(page, "6-breaker-open")
    finally:
        docker_proxy.up()
    expect(page.locator("#breaker-state")).to_have_text("closed", timeout=60_000)
    shot(page, "7-breaker-closed")


def test_an_uploaded_csv_plotted_and_displayed(live_service, shipped_images, admin_page: Page) -> None:
    page, url = admin_page, live_service.url
    request = {"code": PLOT_AND_DISPLAY, "job_type": "data-processing"}
    body, content_type = multipart_body(request, {"data/sales.csv": SALES_CSV.encode()})
    response = requests.post(f"{url}/execute/async", data=body, headers={"Content-Type": content_type}, timeout=30)
    assert response.status_code == 202, response.text
    page.goto(f"{url}/ui/executions/{response.json()['job_id']}/")
    expect(page.locator("#status")).to_have_text("Succeeded", timeout=90_000)
    expect(page.locator("#input-files")).to_contain_text("/input/data/sales.csv")

    tables = page.frame_locator("iframe[sandbox]").first
    expect(tables.locator("table")).to_contain_text("Lisbon")
    expect(tables.locator("tbody tr")).to_have_count(len(CITIES) + 1)
    expect(tables.locator("table")).to_contain_text("<script>window.__pwned = 'csv'</script>")  # as text
    figure = page.locator(".figures img").first
    expect(figure).to_be_visible()
    assert figure.evaluate("img => img.complete && img.naturalWidth > 100")  # a real PNG, loaded
    raw = page.frame_locator("iframe[sandbox]").nth(1)
    expect(raw.locator("#inside")).to_have_text("raw")  # the program's HTML, in its frame…
    expect(raw.locator("#ran")).to_have_count(0)  # …whose script did not run
    expect(page.locator("#stdout")).to_contain_text("<script>window.__pwned = 'stdout'")  # shown as text
    assert page.evaluate("window.__pwned") is None
    assert page.title() != "pwned"
    for frame in page.locator("iframe").all():
        assert frame.get_attribute("sandbox") == ""  # no allow-scripts, no allow-same-origin
    shot(page, "8-rich-output")


def test_code_typed_in_the_editor_runs_with_ctrl_enter(live_service, admin_page: Page) -> None:
    """The New page's CodeMirror editor: Python highlighting, auto-indent, bracket matching, search,
    and Ctrl+Enter sends the form, whose textarea it filled, to a real run; no CSP violation."""
    page, url = admin_page, live_service.url
    page.add_init_script(RECORD_CSP_VIOLATIONS)
    page.goto(f"{url}/ui/new/")
    expect(page.locator("#run-form .cm-editor")).to_be_visible()
    expect(page.locator("textarea#code")).to_be_hidden()  # still in the form, filled by the editor
    page.locator("#run-form .cm-content").click()
    page.keyboard.press("ControlOrMeta+a")
    page.keyboard.press("Delete")
    page.keyboard.type("for i in range(2):\n")
    page.keyboard.type("print('tick', i * 21)")  # the editor indented the loop's body itself
    expect(page.locator(".cm-line").nth(1)).to_have_text("    print('tick', i * 21)")
    assert page.input_value("textarea#code") == "for i in range(2):\n    print('tick', i * 21)"
    keyword = page.locator(".cm-line").first.locator("span", has_text="for").first
    plain, highlighted = page.evaluate(
        "k => [getComputedStyle(k.closest('.cm-line')).color, getComputedStyle(k).color]", keyword.element_handle()
    )
    assert highlighted != plain  # `for` is coloured as a keyword
    expect(page.locator(".cm-matchingBracket")).to_have_count(2)  # the cursor is after ")"
    page.keyboard.press("ControlOrMeta+f")
    expect(page.locator(".cm-search")).to_be_visible()
    page.keyboard.press("Escape")
    expect(page.locator(".cm-search")).to_have_count(0)
    page.click("label[for=code]")  # the label leads to the editor
    expect(page.locator("#run-form .cm-editor")).to_have_class(re.compile(r"\bcm-focused\b"))
    shot(page, "9-code-editor")
    assert page.evaluate("window.__csp") == []  # CodeMirror's <style> came in with the page's nonce
    assert page.evaluate("[...document.querySelectorAll('style')].every(s => s.nonce)")

    page.keyboard.press("Control+Enter")
    page.wait_for_url("**/ui/executions/*/")
    expect(page.locator("#status")).to_have_text("Succeeded", timeout=30_000)
    expect(page.locator("#stdout")).to_have_text("tick 0\ntick 21\n")


DROP_FILES = """([zone, files]) => {
  const transfer = new DataTransfer();
  for (const [name, size, text] of files) {
    transfer.items.add(new File([text === null ? new Uint8Array(size) : text], name));
  }
  const drop = new DragEvent('drop', {dataTransfer: transfer, bubbles: true, cancelable: true});
  document.querySelector(zone).dispatchEvent(drop);
}"""


def test_input_files_dropped_or_picked_are_listed_and_over_limit_ones_refused(live_service, admin_page: Page) -> None:
    page, url = admin_page, live_service.url
    page.goto(f"{url}/ui/new/")
    expect(page.locator("#files-limits")).to_have_text("At most 20 files, 10.0 MB each, 25.0 MB in all.")
    page.evaluate(DROP_FILES, ["[data-dropzone]", [["table.csv", 0, "a,b\n1,2\n"]]])
    page.set_input_files("#input_files", files=[{"name": "notes.txt", "mimeType": "text/plain", "buffer": b"hello"}])
    files = page.locator("#files-list")
    expect(files).to_contain_text("/input/table.csv 8 bytes")
    expect(files).to_contain_text("/input/notes.txt 5 bytes")  # picking added to the dropped file
    expect(files).to_contain_text("2 of at most 20 files, 13 bytes of 25.0 MB")

    page.evaluate(DROP_FILES, ["[data-dropzone]", [["big.bin", 10 * 1024 * 1024 + 1, None], ["my data.csv", 0, "x"]]])
    error = page.locator("#input_files-error")
    expect(error).to_contain_text("“big.bin” was not added: it is 10.0 MB, over the limit of 10.0 MB per file.")
    expect(error).to_contain_text("“my data.csv” was not added: a name may hold only letters, digits")
    expect(files).not_to_contain_text("big.bin")
    expect(files).not_to_contain_text("my data.csv")
    page.evaluate(DROP_FILES, ["[data-dropzone]", [["scratch.txt", 0, "gone"]]])
    page.get_by_role("button", name="Remove scratch.txt").click()
    expect(files).not_to_contain_text("scratch.txt")
    shot(page, "10-input-files")

    # The form sends what is listed, also after the server sent it back with an error: the run
    # reads both files under /input.
    fill_code(page, "print(open('/input/table.csv').read() + open('/input/notes.txt').read())")
    page.fill("#startup_timeout", "5")
    page.click("#run-form button[type=submit]")
    expect(page.locator("#startup_timeout-error")).to_contain_text("between 10 and 600")
    expect(files).to_contain_text("2 of at most 20 files")
    page.fill("#startup_timeout", "30")
    page.click("#run-form button[type=submit]")
    page.wait_for_url("**/ui/executions/*/")
    expect(page.locator("#status")).to_have_text("Succeeded", timeout=30_000)
    expect(page.locator("#stdout")).to_have_text("a,b\n1,2\nhello\n")
    expect(page.locator("#input-files")).to_contain_text("/input/notes.txt")


def test_without_javascript_the_textarea_is_the_editor_and_files_still_go(live_service, browser: Browser) -> None:
    """Progressive enhancement: with scripts off, no CodeMirror, and the plain form still runs a job."""
    User.objects.create_user("plain", password=PASSWORD)
    context = browser.new_context(java_script_enabled=False)
    try:
        page = context.new_page()
        page.goto(f"{live_service.url}/ui/login/")
        page.fill("#id_username", "plain")
        page.fill("#id_password", PASSWORD)
        page.click("main button[type=submit]")
        page.goto(f"{live_service.url}/ui/new/")
        expect(page.locator(".cm-editor")).to_have_count(0)
        page.fill("#code", "print(open('/input/notes.txt').read())")
        page.set_input_files("#input_files", files=[{"name": "notes.txt", "mimeType": "text/plain", "buffer": b"hi"}])
        page.click("#run-form button[type=submit]")
        page.wait_for_url("**/ui/executions/*/")
        execution = Execution.objects.get(submitted_by__username="plain")
        assert execution.code == "print(open('/input/notes.txt').read())"
        assert [(f.path, f.size_bytes) for f in execution.input_files.all()] == [("notes.txt", 2)]
    finally:
        context.close()
