"""The dashboard in a real headless browser (Debian's chromium driven by Playwright) against
a running scheduler: find a failed job from the overview, retry it and see it succeed;
cancel a running job; pause a schedule; watch the overview refresh by itself."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import asyncpg
import pytest
from playwright.async_api import Browser, Page, expect
from starlette.requests import Request

from scheduler import JobStatus, Scheduler
from scheduler.dashboard import DashboardAction
from tests.browser.harness import add_demo_schedules, chromium, register_demo_tasks, serve_dashboard
from tests.conftest import SchedulerFactory
from tests.support.db import has_status, wait_until

#: How long the browser waits for the page to show an outcome (the job runs meanwhile).
SHOWS_WITHIN_MS = 20_000


def operator(request: Request, action: DashboardAction) -> bool:
    return True


@dataclass
class Shop:
    scheduler: Scheduler
    url: str
    page: Page


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with chromium() as launched:
        yield launched


@pytest.fixture
async def shop(
    pool: asyncpg.Pool, migrated: str, make_scheduler: SchedulerFactory, browser: Browser
) -> AsyncIterator[Shop]:
    """A running replica with the shop's tasks, its dashboard over HTTP, and a browser tab."""
    scheduler = make_scheduler(queues=["default", "mail", "billing", "media"])
    register_demo_tasks(scheduler)
    await add_demo_schedules(scheduler)
    await scheduler.start()
    async with serve_dashboard(pool, migrated, operator, refresh_seconds=0.5) as url:
        context = await browser.new_context(viewport={"width": 1280, "height": 800})
        page = await context.new_page()
        try:
            yield Shop(scheduler, url, page)
        finally:
            await context.close()


async def test_find_a_failed_job_from_the_overview_retry_it_and_see_it_succeed(
    shop: Shop,
) -> None:
    job_id = await shop.scheduler.schedule("billing.charge_card", args=("INV-1042", 4900))
    await wait_until(lambda: has_status(shop.scheduler, job_id, JobStatus.FAILED))
    page = shop.page

    await page.goto(shop.url + "/")
    failed_link = page.locator(
        '#tasks tr[data-row="billing.charge_card"] td[data-field="failed_hour"] a'
    )
    await expect(failed_link).to_have_text("1")
    await failed_link.click()
    await expect(page.locator("nav.tabs a.current")).to_have_text("failed")
    await page.get_by_role("link", name=job_id).click()

    await expect(page.locator("h1 .pill")).to_have_text("failed")
    await expect(page.locator("#last-error")).to_contain_text("card declined for invoice INV-1042")
    await expect(page.locator("#arguments")).to_contain_text("INV-1042")
    await page.get_by_role("button", name="Retry").click()

    # The page reloads itself while the job is unfinished.
    await expect(page.locator("h1 .pill")).to_have_text("succeeded", timeout=SHOWS_WITHIN_MS)
    await expect(page.locator("#result")).to_contain_text('"charged": 4900')
    await expect(page.locator("#attempts tbody tr")).to_have_count(2)
    assert await has_status(shop.scheduler, job_id, JobStatus.SUCCEEDED)


async def test_cancel_a_running_job(shop: Shop) -> None:
    job_id = await shop.scheduler.schedule("media.resize_image", args=("cat.png", 640))
    await wait_until(lambda: has_status(shop.scheduler, job_id, JobStatus.RUNNING))
    page = shop.page

    await page.goto(shop.url + "/jobs?status=running")
    await page.get_by_role("link", name=job_id).click()
    await expect(page.locator("h1 .pill")).to_have_text("running")
    await page.get_by_role("button", name="Cancel").click()

    await expect(page.locator("h1 .pill")).to_have_text("cancelled", timeout=SHOWS_WITHIN_MS)
    await expect(page.get_by_role("button", name="Retry")).to_be_visible()
    assert await has_status(shop.scheduler, job_id, JobStatus.CANCELLED)


async def test_pause_a_schedule(shop: Shop) -> None:
    page = shop.page
    await page.goto(shop.url + "/schedules")
    row = page.locator('tr[data-schedule="inventory-sync"]')
    await expect(row.locator(".state .pill")).to_have_text("active")
    await row.get_by_role("button", name="Pause").click()

    await expect(row.locator(".state .pill")).to_have_text("paused")
    await expect(row.get_by_role("button", name="Resume")).to_be_visible()
    stored = await shop.scheduler.get_schedule("inventory-sync")
    assert stored is not None and stored.paused
    other = await shop.scheduler.get_schedule("nightly-report")
    assert other is not None and not other.paused


async def test_the_overview_refreshes_its_counts_without_a_reload(shop: Shop) -> None:
    await shop.scheduler.pause_queue("mail")  # so the new jobs stay due
    await shop.scheduler.schedule("emails.send_welcome", args=(1,))
    page = shop.page
    await page.goto(shop.url + "/")
    due = page.locator('#queues tr[data-row="mail"] td[data-field="due_now"]')
    await expect(due).to_have_text("1")
    loaded_at = await page.evaluate("performance.timeOrigin")

    for user in (2, 3):
        await shop.scheduler.schedule("emails.send_welcome", args=(user,))
    await expect(due).to_have_text("3", timeout=SHOWS_WITHIN_MS)
    assert await page.evaluate("performance.timeOrigin") == loaded_at  # no reload


async def test_a_read_only_dashboard_shows_no_action_buttons(
    pool: asyncpg.Pool, migrated: str, browser: Browser
) -> None:
    scheduler = Scheduler(pool, schema=migrated)
    register_demo_tasks(scheduler)
    await add_demo_schedules(scheduler)
    async with serve_dashboard(pool, migrated, None) as url:
        page = await browser.new_page()
        try:
            await page.goto(url + "/schedules")
            await expect(page.locator('tr[data-schedule="inventory-sync"]')).to_be_visible()
            await expect(page.locator("button")).to_have_count(0)
            await expect(page.locator(".badge.readonly")).to_have_text("read-only")
        finally:
            await page.close()
