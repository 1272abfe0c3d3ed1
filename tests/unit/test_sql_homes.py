"""Every SQL function, view and trigger has one home: its file in scheduler/postgres/functions/
(issue 20, item 1). The numbered migrations hold table changes and the drops a signature
change needs; the function files hold the current bodies."""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

from scheduler.postgres import migrate as migrations

PACKAGE = Path(migrations.__file__).resolve().parents[1]
FUNCTIONS = PACKAGE / "postgres" / "functions"
DEFINITION = re.compile(
    r"\bCREATE\s+(?:OR\s+REPLACE\s+)?(FUNCTION|VIEW|TRIGGER)\s+(?:\{schema\}\.)?(\w+)", re.I
)

#: The checksum of each revision of the function files. Changing a file changes the checksum:
#: bump `revision` in functions/manifest.txt and add its line here (a replica refuses a
#: database whose functions have a higher revision than its own, and repairs a lower one).
REVISIONS = {
    1: "fd9148f75cd06cfce20eb24eb3feb35e1b7bbbc7ca5b5f0068cef034af14cd75",
    2: "20add5b0d26ba6cb9d2453464ed5fc641b1b44a7033f7a5fc67f8275ad17884d",
    3: "18058d4187851960ef6576d3d82dad2282b08dca8c703ba7cb5e89354d1096a1",
    4: "bb5bc73418d6e901714c52c3bb374491a354e714f61d5bb68e82e6c17b027fa6",
    5: "30fec016d7fdd94095a247918847f0e353f0ebc8acc81fae4cba991da58c0349",
    6: "55aeb6414becccb8b8c3d6b4d49fd158db61282f940d6d008669fe85464bcb49",
    7: "e401be810a7abd59358887bbcf072a84599d07b4a043a9e433d18ae920bba9be",
}


def definitions() -> dict[tuple[str, str], set[str]]:
    """(kind, name) -> the SQL files of the package that create it."""
    found: dict[tuple[str, str], set[str]] = defaultdict(set)
    for path in PACKAGE.rglob("*.sql"):
        text = "\n".join(
            line for line in path.read_text().splitlines() if not line.lstrip().startswith("--")
        )
        for kind, name in DEFINITION.findall(text):
            found[(kind.upper(), name)].add(str(path.relative_to(PACKAGE)))
    return found


def test_no_function_or_view_is_defined_in_two_files() -> None:
    twice = {key: files for key, files in definitions().items() if len(files) > 1}
    assert twice == {}


def test_functions_views_and_triggers_are_created_only_in_their_own_file() -> None:
    """A limit kind's functions (limit_<kind>_*) share its file, limit_<kind>.sql: adding a
    kind is one SQL file (see limit_problem.sql)."""
    misplaced = {}
    for (kind, name), files in definitions().items():
        for file in files:
            home = "postgres/functions/" if kind == "TRIGGER" else f"postgres/functions/{name}.sql"
            if not (file.startswith(home) or _in_its_limit_kind_file(kind, name, file)):
                misplaced[(kind, name)] = file
    assert misplaced == {}


def _in_its_limit_kind_file(kind: str, name: str, file: str) -> bool:
    stem = Path(file).stem
    return (
        kind == "FUNCTION"
        and file.startswith("postgres/functions/limit_")
        and name.startswith(f"{stem}_")
        and f"{stem}_problem" in {n for k, n in definitions() if k == "FUNCTION"}
    )


def test_the_function_files_replace_in_place() -> None:
    """Every file can be applied again: CREATE OR REPLACE, or a trigger dropped first."""
    for name, template in migrations.function_set().files:
        plain = re.findall(r"\bCREATE\s+(FUNCTION|VIEW)\b", template, re.I)
        assert plain == [], f"{name}.sql: use CREATE OR REPLACE"
        for trigger, table in re.findall(
            r"\bCREATE\s+TRIGGER\s+(\w+)\s.*?\bON\s+(\S+)", template, re.S
        ):
            assert f"DROP TRIGGER IF EXISTS {trigger} ON {table};" in template, name


def test_the_manifest_lists_every_file_once_with_a_pinned_revision() -> None:
    shipped = migrations.function_set()
    assert {name for name, _ in shipped.files} == {p.stem for p in FUNCTIONS.glob("*.sql")}
    assert shipped.files[-1][0] == "public_access"  # the revoke sees every function
    assert REVISIONS.get(shipped.revision) == shipped.checksum, (
        "the function files changed: bump `revision` in functions/manifest.txt and pin the"
        f" new checksum here: {shipped.revision}: {shipped.checksum!r}"
    )
    assert max(REVISIONS) == shipped.revision
