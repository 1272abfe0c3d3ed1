from __future__ import annotations

from django.db import models


class Order(models.Model):
    item = models.TextField()
    receipt_sent = models.BooleanField(default=False)
