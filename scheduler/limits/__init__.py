"""Limit kinds: what a queue's or a task's limits may be.

A kind is a module of this package holding a `Limit` subclass (its settings, checked) and a
SQL file `scheduler/postgres/functions/limit_<kind>.sql` holding its four functions (see
limit_problem.sql there): nothing else names it. The claim, `set_limit()`, the views and
`queue_stats()` handle every kind alike. Importing this package imports every module in it,
so each kind registers itself."""

from __future__ import annotations

import importlib
import pkgutil

from scheduler.limits.base import Limit, StoredLimit, limit_from_row, limit_scope

__all__ = ["Limit", "StoredLimit", "limit_from_row", "limit_scope"]

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")
