"""Who may act, and proof that a form came from the dashboard itself.

Actions are refused unless the application supplies an `authorize` hook that allows them
(read-only by default). Every form carries a CSRF token: a random value signed with the
app's secret, sent both as a cookie and as a form field (signed double submit). A POST
whose field and cookie differ, or whose signature does not verify, is refused with 403: a
page on another site can make a browser send the cookie but can neither read it nor forge
a signed value of its own.
"""

from __future__ import annotations

import hashlib
import hmac
import inspect
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from starlette.requests import Request

CSRF_COOKIE = "scheduler_dashboard_csrf"
CSRF_FIELD = "csrf_token"

#: The actions the dashboard can take, by the name its forms post to.
ACTIONS = (
    "cancel_job",
    "retry_job",
    "pause_queue",
    "resume_queue",
    "pause_schedule",
    "resume_schedule",
)


@dataclass(frozen=True)
class DashboardAction:
    """What an operator asked for: `name` is one of ACTIONS, `target` the job id, queue
    name or schedule id it acts on."""

    name: str
    target: str


#: The hook an application supplies: True allows the action for this request (look at
#: request.user, a session, a header set by your proxy...). May be async.
Authorize = Callable[[Request, DashboardAction], "bool | Awaitable[bool]"]


async def is_allowed(
    authorize: Authorize | None, request: Request, action: DashboardAction
) -> bool:
    if authorize is None:
        return False
    verdict = authorize(request, action)
    if inspect.isawaitable(verdict):
        verdict = await verdict
    return verdict is True


class CsrfTokens:
    """Signed tokens: `nonce.signature`, the signature an HMAC-SHA256 of the nonce."""

    def __init__(self, secret: bytes | str | None) -> None:
        if isinstance(secret, str):
            secret = secret.encode()
        # Without a configured secret, tokens hold for this process only: a restart (or
        # another replica behind a load balancer) asks the operator to reload the page.
        self._secret = secret or secrets.token_bytes(32)

    def new(self) -> str:
        nonce = secrets.token_urlsafe(24)
        return f"{nonce}.{self._sign(nonce)}"

    def is_valid(self, token: str | None) -> bool:
        if not token or token.count(".") != 1:
            return False
        nonce, signature = token.split(".")
        return hmac.compare_digest(signature, self._sign(nonce))

    def matches(self, cookie: str | None, field: str | None) -> bool:
        """The form's token equals the cookie's, and is one this app signed."""
        if not cookie or not field or not self.is_valid(cookie):
            return False
        return hmac.compare_digest(cookie, field)

    def _sign(self, nonce: str) -> str:
        return hmac.new(self._secret, nonce.encode(), hashlib.sha256).hexdigest()
