"""Connection strings: check a DSN before asyncpg sees it, and turn a libpq keyword/value
string (``host=db port=5432 dbname=app``) into the URL form asyncpg's ``connect(dsn=...)``
takes. asyncpg parses only URLs, and answers anything else (or a port that is not a
number) with an exception whose text does not say what to pass instead."""

from __future__ import annotations

import urllib.parse

from scheduler.errors import InvalidDsnError

#: What a DSN looks like, for the error messages.
_FORMS = (
    "postgresql://USER[:PASSWORD]@HOST[:PORT]/DBNAME, or libpq keywords such as"
    " 'host=HOST port=5432 dbname=DBNAME user=USER'"
)
_SCHEMES = ("postgresql", "postgres")

#: The libpq keywords asyncpg honours in a URL's query string (asyncpg passes any other
#: query parameter to the server as a setting, so those are refused, not passed on).
#: application_name is a server setting, and works as one.
KEYWORDS = frozenset(
    {
        "host",
        "port",
        "dbname",
        "user",
        "password",
        "passfile",
        "sslmode",
        "sslcert",
        "sslkey",
        "sslrootcert",
        "sslcrl",
        "sslpassword",
        "ssl_min_protocol_version",
        "ssl_max_protocol_version",
        "target_session_attrs",
        "krbsrvname",
        "gsslib",
        "application_name",
    }
)


def normalize_dsn(text: str | None) -> str | None:
    """`text` as a DSN asyncpg accepts, or None (no DSN: libpq's PG* defaults apply).

    Raises `InvalidDsnError`, saying what to pass, for anything else."""
    if text is None or not text.strip():
        return None
    text = text.strip()
    if "://" in text:
        _check_url(text)
        return text
    if "=" in text:
        return keywords_to_url(parse_keywords(text))
    raise InvalidDsnError(f"{_redact(text)!r} is not a PostgreSQL DSN: pass {_FORMS}")


def parse_keywords(text: str) -> dict[str, str]:
    """Parse a libpq keyword/value connection string.

    libpq's rules: pairs are separated by whitespace; spaces around ``=`` are allowed; a
    value is either a run of non-space characters or a single-quoted string (possibly
    empty or holding spaces); a backslash escapes the next character in either form."""
    pairs: dict[str, str] = {}
    i, n = 0, len(text)
    while True:
        while i < n and text[i].isspace():
            i += 1
        if i >= n:
            return pairs
        start = i
        while i < n and not text[i].isspace() and text[i] != "=":
            i += 1
        key = text[start:i]
        while i < n and text[i].isspace():
            i += 1
        if not key or i >= n or text[i] != "=":
            raise InvalidDsnError(
                f"connection string: expected KEYWORD=VALUE at {text[start : start + 20]!r};"
                f" pass {_FORMS}"
            )
        i += 1
        while i < n and text[i].isspace():
            i += 1
        value: list[str] = []
        if i < n and text[i] == "'":
            i += 1
            while True:
                if i >= n:
                    raise InvalidDsnError(
                        f"connection string: the quoted value of {key!r} has no closing quote"
                    )
                if text[i] == "\\" and i + 1 < n:
                    value.append(text[i + 1])
                    i += 2
                elif text[i] == "'":
                    i += 1
                    break
                else:
                    value.append(text[i])
                    i += 1
        else:
            while i < n and not text[i].isspace():
                if text[i] == "\\" and i + 1 < n:
                    value.append(text[i + 1])
                    i += 2
                else:
                    value.append(text[i])
                    i += 1
        if key not in KEYWORDS:
            raise InvalidDsnError(
                f"connection string: keyword {key!r} is unknown or not supported by asyncpg;"
                f" use {', '.join(sorted(KEYWORDS))}"
            )
        pairs[key] = "".join(value)


def keywords_to_url(pairs: dict[str, str]) -> str:
    """The URL asyncpg reads the same connection from: every keyword in the query string,
    where asyncpg takes host, port, dbname, user, password and the ssl options."""
    if "port" in pairs:
        _check_ports(pairs["port"].split(","))
    query = urllib.parse.urlencode(pairs, quote_via=urllib.parse.quote)
    return "postgresql://" + (f"?{query}" if query else "")


def _check_url(text: str) -> None:
    scheme = text.split("://", 1)[0]
    if scheme.lower() not in _SCHEMES:
        raise InvalidDsnError(
            f"DSN scheme {scheme!r} is not PostgreSQL: pass {_FORMS}",
        )
    try:
        parsed = urllib.parse.urlsplit(text)
    except ValueError as exc:  # e.g. an unbalanced [ in an IPv6 host
        raise InvalidDsnError(f"malformed DSN ({exc}): pass {_FORMS}") from None
    # A netloc may list several hosts (h1:5432,h2:5433); each port must be a number.
    hosts = parsed.netloc.rpartition("@")[2]
    ports = []
    for host in hosts.split(","):
        if host.startswith("["):  # [IPv6]:port
            ports.append(host.partition("]")[2].removeprefix(":"))
        elif ":" in host:
            ports.append(host.rpartition(":")[2])
    _check_ports([p for p in ports if p])
    query = urllib.parse.parse_qs(parsed.query)
    if "port" in query:
        _check_ports(",".join(query["port"]).split(","))


def _check_ports(ports: list[str]) -> None:
    for port in ports:
        if not port.isdigit() or not 0 < int(port) < 65536:
            raise InvalidDsnError(
                f"DSN port {port!r} is not a port number (1-65535): pass {_FORMS}"
            )


def _redact(text: str) -> str:
    """Enough of a rejected DSN to recognise it, without a password it may hold."""
    return text if len(text) <= 40 and "password" not in text else text[:12] + "…"


def describe_target(dsn: str | None) -> str:
    """'HOST:PORT/DBNAME' of a normalized DSN, for messages (no user, no password)."""
    if dsn is None:
        return "the server named by the PG* environment variables (libpq defaults)"
    parsed = urllib.parse.urlsplit(dsn)
    query = dict(urllib.parse.parse_qsl(parsed.query))
    host = parsed.netloc.rpartition("@")[2] or query.get("host", "localhost")
    if "port" in query and ":" not in host:
        host = f"{host}:{query['port']}"
    dbname = parsed.path.lstrip("/") or query.get("dbname", "")
    return f"{host}/{dbname}" if dbname else host
