"""The jobs. Sync tasks run in the worker's threads, so they may use the ORM."""

from __future__ import annotations

from django.db import close_old_connections

from shop.models import Order


def send_receipt(order_id: int) -> None:
    try:
        # Talk to the mail provider here, then record it.
        Order.objects.filter(pk=order_id).update(receipt_sent=True)
    finally:
        close_old_connections()
