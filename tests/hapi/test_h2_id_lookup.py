"""The launcher's rewrite of HAPI's id lookup for H2 (``H2IdLookupInspector``).

Before a transaction writes, HAPI looks up the ids of its ``PUT Type/id`` entries in one query,
an OR of (type, id) pairs; the service writes its AuditEvents that way. H2 cannot read such an OR
from an index and scans every stored resource, so the launcher rewrites it into a row-value
list. Run here on H2 itself, through the inspector class of the runnable launcher jar, against
a table shaped like HAPI's: H2 must read the rewritten lookup from the unique index on
``(res_type, fhir_id)``, find exactly the rows the statement as HAPI sent it finds, and leave
every other statement as it came. The statement is the one HAPI 8.8.0 sends (Hibernate 6.6,
captured from the launcher's log with ``--logging.level.org.hibernate.SQL=DEBUG``).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from fhir_service.cli.local_hapi import build
from tests.support import launcher_class_path, run_java_source

HARNESS = Path(__file__).parents[1] / "data" / "hapi" / "IdLookupPlan.java"
SELECT = (
    "select rt1_0.res_id,rt1_0.res_type,rt1_0.fhir_id,rt1_0.res_deleted_at,rt1_0.partition_id"
    " from hfj_resource rt1_0 where "
)
PAIR = "rt1_0.res_type=? and rt1_0.fhir_id=?"
LIBRARIES = ("hibernate-core-", "h2-", "slf4j-api-")


@pytest.fixture(scope="module")
def class_path(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The launcher's own classes and the jars they need (Hibernate's, H2's, SLF4J's API), taken
    from the runnable jar."""
    return launcher_class_path(tmp_path_factory.mktemp("launcher"), build(), LIBRARIES)


def _plan(class_path: str, sql: str, pairs: list[str]) -> dict[str, list[str]]:
    """What the harness printed for ``sql`` bound to ``pairs`` (none: only the rewrite), by
    the first word of each line."""
    said: dict[str, list[str]] = {}
    for line in run_java_source(class_path, HARNESS, sql, *pairs):
        word, _, rest = line.partition(" ")
        said.setdefault(word, []).append(rest)
    return said


def test_h2_reads_hapis_id_lookup_from_the_index_and_finds_the_same_rows(class_path: str) -> None:
    # Two stored; one id stored under the other type; one never stored.
    pairs = ["AuditEvent/r10", "CarePlan/r11", "CarePlan/r12", "AuditEvent/missing"]
    sql = SELECT + "(" + " or ".join([PAIR] * len(pairs)) + ")"

    said = _plan(class_path, sql, pairs)

    as_sent, rewritten = said["plan"]
    assert "tableScan" in as_sent, as_sent  # why the launcher rewrites it
    # H2 names the index of the unique constraint after it: IDX_RES_TYPE_FHIR_ID_INDEX_<n>.
    assert re.search(r"IDX_RES_TYPE_FHIR_ID\w*: IN\(ROW", rewritten), rewritten
    assert "tableScan" not in rewritten, rewritten
    found = sorted(said["row"])
    assert found == [
        "rewritten AuditEvent/r10",
        "rewritten CarePlan/r11",
        "sent AuditEvent/r10",
        "sent CarePlan/r11",
    ]
    assert said["rewritten"] == [
        SELECT + "((rt1_0.res_type,rt1_0.fhir_id) in ((?,?),(?,?),(?,?),(?,?)))"
    ]


@pytest.mark.parametrize(
    "sql",
    [
        # One pair: H2 reads it from the index already.
        SELECT + PAIR,
        # Pairs of different aliases, or another column, are not HAPI's lookup.
        SELECT + "(rt1_0.res_type=? and rt1_0.fhir_id=? or rt2_0.res_type=? and rt2_0.fhir_id=?)",
        SELECT + "(rt1_0.res_type=? and rt1_0.res_id=? or rt1_0.res_type=? and rt1_0.res_id=?)",
    ],
)
def test_any_other_statement_is_left_as_it_came(class_path: str, sql: str) -> None:
    said = _plan(class_path, sql, [])
    assert said["rewritten"] == [sql]
