from __future__ import annotations

import json

from django.conf import settings
from django.db import connection, transaction
from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_POST

from scheduler import SyncProducer
from shop.models import Order
from shop.tasks import send_receipt

producer = SyncProducer(schema=settings.SCHEDULER_SCHEMA, tasks=[send_receipt])


class OrderAbandoned(Exception):
    """Raised inside the transaction to roll it back (to show that the job goes too)."""


@require_POST
def create_order(request: HttpRequest) -> JsonResponse:
    body = json.loads(request.body)
    try:
        with transaction.atomic():  # the order and its receipt job commit together
            order = Order.objects.create(item=body["item"])
            job_id = producer.schedule(
                connection, send_receipt, args=[order.pk], job_id=f"receipt-{order.pk}"
            )
            if body.get("fail_after_enqueue"):
                raise OrderAbandoned(order.pk)
    except OrderAbandoned as abandoned:
        return JsonResponse({"order_id": abandoned.args[0]}, status=409)
    return JsonResponse({"order_id": order.pk, "job_id": job_id}, status=201)
