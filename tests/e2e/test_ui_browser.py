"""The Airflow web UI in a real browser, on the stack ``make airflow`` starts.

Playwright for Python drives Debian's Chromium (``/usr/bin/chromium``, installed by
``.ci/install-browser``; Playwright's own browser download is never used). As a new user would:
log in, open ``artefact_promotion``, read the trigger form's params and their help, trigger a dry
run and see it succeed; open a halted run's ``halt_prod_consumers`` log and read why; clear a
failed task and see the rerun succeed. Each step leaves a screenshot in the folder printed at the
start (``.local/test-artifacts/ui/`` unless ``GREENLIGHT_UI_ARTIFACTS`` says otherwise).

The QA side (a delivery with a renamed column, a missing sign-off) is set up through S3, and run
states are confirmed through the REST API as well as on the page.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import urllib.parse
from pathlib import Path

import pytest
from e2ehelpers import wait_for

from greenlight.dev import demo

# The session's local stack starts inside the first test's timeout: minutes on a shared machine.
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(2400)]

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("GREENLIGHT_CHROMIUM", "/usr/bin/chromium")
# Headless, as root (--no-sandbox), and nothing that phones home: this machine's network is closed.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
RUN_TIMEOUT = 1200  # seconds: generous; a run takes well under a minute alone
UI_TIMEOUT_MS = 240_000  # the page waits: the API server shares 2 cores with the scheduler and tasks
DAG = "artefact_promotion"
PROMOTION_HELP = {
    "dry_run": "Log the per-object plan and change nothing.",
    "only": "Promote only these configured prefixes (source URI or name). Empty = all.",
    "resume_consumers": "After a verified promotion, unpause the prod consumer DAGs that a contract halt paused",
}


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() not in ("", "0", "false", "no")


def _require_browser():
    """Playwright's sync API, or a skip when there is no browser here (never under CI: a failure)."""
    missing = None
    if not Path(CHROMIUM).exists():
        missing = f"{CHROMIUM} not found (install it with .ci/install-browser)"
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing = missing or "playwright is not installed (pip install -r requirements-dev.txt -c constraints.txt)"
        sync_playwright = None
    if missing:
        if _in_ci():
            pytest.fail(f"browser UI test cannot run under CI: {missing}")
        pytest.skip(f"no browser for the UI test: {missing}")
    return sync_playwright


@pytest.fixture(scope="module")
def shots():
    folder = Path(os.environ.get("GREENLIGHT_UI_ARTIFACTS") or ROOT / ".local" / "test-artifacts" / "ui")
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.png"):
        old.unlink()
    print(f"\nUI screenshots: {folder}")
    return folder


@pytest.fixture(scope="module")
def browser_page(local_stack, shots):
    sync_playwright = _require_browser()
    from playwright.sync_api import expect

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            context = browser.new_context(viewport={"width": 1440, "height": 900})
            context.set_default_timeout(UI_TIMEOUT_MS)
            expect.set_options(timeout=UI_TIMEOUT_MS)
            page = context.new_page()
            login(page, local_stack.url, local_stack.admin_password())
            yield page
        finally:
            browser.close()


def login(page, base: str, password: str) -> None:
    page.goto(f"{base}/auth/login")
    page.locator("input[name=username]").fill("admin")
    page.locator("input[name=password]").fill(password)
    page.get_by_role("button", name=re.compile("sign in|log ?in", re.I)).click()
    page.wait_for_url(lambda url: "/auth/login" not in url)


def shot(page, folder: Path, name: str) -> Path:
    path = folder / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def run_url(base: str, run_id: str) -> str:
    return f"{base}/dags/{DAG}/runs/{urllib.parse.quote(run_id, safe='')}"


def state_badge(page, title: str):
    """The state badge next to a run's or task's title (the page header: ``<h2>title</h2> [Success]``)."""
    heading = page.locator("h2").filter(has_text=re.compile(rf"^{re.escape(title)}$"))
    return heading.locator("xpath=following-sibling::*[@data-testid='state-badge']")


def test_trigger_form_params_and_a_dry_run(browser_page, local_stack, stack_api, shots):
    from playwright.sync_api import expect

    page, api, client = browser_page, stack_api, local_stack.client()
    prod_before = demo.prod_versions(client)
    page.goto(f"{local_stack.url}/dags/{DAG}")
    expect(page.get_by_text(DAG).first).to_be_visible()
    shot(page, shots, "01-dag-page")

    page.get_by_role("button", name="Trigger").first.click()
    dialog = page.get_by_role("dialog")
    expect(dialog.get_by_text(f"Trigger Dag - {DAG}")).to_be_visible()
    expect(dialog.get_by_text("Run Parameters")).to_be_visible()  # a section, open by default
    for name, help_text in PROMOTION_HELP.items():  # each param: its name, its help under the field
        expect(dialog.get_by_role("group").filter(has_text=help_text).last).to_contain_text(name)
    shot(page, shots, "02-trigger-form")

    # A dry run of one prefix: switch dry_run on, name the prefix in `only` (one per line).
    # A boolean Param is a switch: a visually hidden checkbox inside its label.
    dry_run = dialog.get_by_role("checkbox", name="dry_run")
    expect(dry_run).not_to_be_checked()
    dialog.locator("label").filter(has=page.get_by_role("checkbox", name="dry_run")).first.click()
    expect(dry_run).to_be_checked()
    only = dialog.get_by_role("group").filter(has_text=PROMOTION_HELP["only"]).last.get_by_role("textbox")
    only.fill("deliveries_csv")  # an array Param: one item per line
    shot(page, shots, "03-trigger-form-filled")
    dialog.get_by_role("button", name="Trigger").last.click()
    page.wait_for_url(re.compile(rf"/dags/{DAG}/runs/[^/?]+"))
    run_id = urllib.parse.unquote(re.search(rf"/dags/{DAG}/runs/([^/?]+)", page.url).group(1))

    run = api.run(DAG, run_id)
    assert run["conf"] == {"dry_run": True, "only": ["deliveries_csv"], "resume_consumers": False, "lease_wait": 0}, (
        run["conf"]
    )
    assert api.wait_finished(DAG, run_id, RUN_TIMEOUT) == "success", sorted(api.task_states(DAG, run_id).items())
    page.goto(run_url(local_stack.url, run_id))
    expect(state_badge(page, run_id)).to_have_text(re.compile("success", re.I))
    shot(page, shots, "04-dry-run-succeeded")
    assert demo.prod_versions(client) == prod_before  # a dry run changes nothing


def test_halted_run_log_says_why(browser_page, local_stack, stack_api, shots):
    from playwright.sync_api import expect

    page, api, client = browser_page, stack_api, local_stack.client()
    # QA delivers a forecast whose column was renamed (forecast_yield -> yield_forecast).
    demo.seed(client, dt.date.today(), variant="renamed_column", tracking_uri=local_stack.tracking_uri)
    try:
        run_id = api.trigger(DAG, {"only": ["deliveries_csv"]})
        assert api.wait_finished(DAG, run_id, RUN_TIMEOUT) == "failed"
    finally:
        demo.seed(client, dt.date.today(), tracking_uri=local_stack.tracking_uri)
    assert api.task_states(DAG, run_id)[("halt_prod_consumers", -1)] == "failed"

    # The task page opens on its log: the reason (the gate's finding) and the paused consumer.
    page.goto(f"{run_url(local_stack.url, run_id)}/tasks/halt_prod_consumers")
    expect(state_badge(page, "halt_prod_consumers")).to_have_text(re.compile("failed", re.I))
    expect(page.get_by_text(re.compile(r"contract gate failed for deliveries_csv")).first).to_be_visible()
    expect(page.get_by_text(re.compile(r"column 'forecast_yield' .* is missing")).first).to_be_visible()
    expect(page.get_by_text(re.compile(f"paused consumer DAG {demo.CONSUMER}")).first).to_be_visible()
    page.keyboard.press("w")  # the log viewer's hotkey: wrap long lines, so the screenshot shows them
    shot(page, shots, "05-halt-log")


def test_clear_a_failed_task_and_the_rerun_succeeds(browser_page, local_stack, stack_api, shots):
    from playwright.sync_api import expect

    page, api, client = browser_page, stack_api, local_stack.client()
    # New QA data, but QA has not signed off yet: `plan` refuses, the run fails.
    demo.seed(client, dt.date.today(), tracking_uri=local_stack.tracking_uri)
    client.delete_object(Bucket=demo.QA_BUCKET, Key=demo.SIGNOFF_MARKER)
    run_id = api.trigger(DAG, {"only": ["deliveries_csv"]})
    assert api.wait_finished(DAG, run_id, RUN_TIMEOUT) == "failed"
    assert api.task_states(DAG, run_id)[("plan", -1)] == "failed"

    page.goto(f"{run_url(local_stack.url, run_id)}/tasks/plan")
    expect(page.get_by_text(re.compile("has not signed off")).first).to_be_visible()
    shot(page, shots, "06-failed-task")

    # QA signs off; the operator clears the failed task (with its downstream tasks) in the UI.
    client.put_object(Bucket=demo.QA_BUCKET, Key=demo.SIGNOFF_MARKER, Body=b"signed off\n")
    # The task header's clear button (an icon; its tooltip names the hotkey).
    page.get_by_role("button", name=re.compile(r"shift\+c to clear", re.I)).first.click()
    dialog = page.get_by_role("dialog")
    # "Downstream" is on by default: plan and the 9 tasks after it (shards; check_run last) are cleared.
    expect(dialog.get_by_text(re.compile(r"^Clear Task Instance: plan"))).to_be_visible()
    expect(dialog.get_by_text("Affected Tasks: 10")).to_be_visible()
    shot(page, shots, "07-clear-dialog")
    dialog.get_by_role("button", name="Confirm").click()

    def plan_retried():
        tis = {(t["task_id"], t["map_index"]): t for t in api.task_instances(DAG, run_id)}
        return tis.get(("plan", -1), {}).get("try_number", 0) >= 2

    wait_for(plan_retried, RUN_TIMEOUT, "the cleared task to run again")
    assert api.wait_finished(DAG, run_id, RUN_TIMEOUT) == "success", sorted(api.task_states(DAG, run_id).items())
    page.goto(run_url(local_stack.url, run_id))
    expect(state_badge(page, run_id)).to_have_text(re.compile("success", re.I))
    shot(page, shots, "08-rerun-succeeded")
