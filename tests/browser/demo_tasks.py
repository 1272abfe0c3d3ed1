"""Tasks of a small shop, for the browser tests and the README's screenshots. Registered
on one Scheduler each (harness.register_demo_tasks), never in the global registry."""

from __future__ import annotations

import anyio

from scheduler import current_job


class PaymentDeclinedError(Exception):
    pass


async def send_welcome_email(user_id: int) -> str:
    await anyio.sleep(0.01)
    return f"sent to user {user_id}"


async def charge_card(invoice: str, amount_cents: int) -> dict[str, object]:
    """Declined on its first attempt, accepted when run again (a retry from the dashboard)."""
    if current_job().attempt <= 1:
        raise PaymentDeclinedError(f"card declined for invoice {invoice} (insufficient funds)")
    return {"invoice": invoice, "charged": amount_cents}


async def resize_image(path: str, width: int) -> None:
    """Runs until cancelled."""
    await anyio.sleep_forever()


async def nightly_report() -> None:
    await anyio.sleep(0.01)


async def sync_inventory(warehouse: str) -> None:
    await anyio.sleep(0.01)
