"""Surveys, one per held pledge, upserted on pledge_id.

Conflict rule: the pledge's latest row replaces every survey column; a survey equal to what is
stored is not written.
"""

from __future__ import annotations

from sqlalchemy import Connection, exists, select, update

from pledgeflow.writers.dialects import created_flag, record_written, upsert_into
from pledgeflow.writers.guards import differs
from pledgeflow.writers.stages import STAGE_PLEDGE, SURVEY_COMPARED
from schemas.tables import SURVEY


def write_surveys(conn: Connection) -> None:
    """Upsert the surveys of the pledges the chunk holds; record each one's id and outcome on
    its pledge's staged row."""
    s = STAGE_PLEDGE
    # Surveys of held pledges that existed before this chunk: compare first, so an unchanged
    # survey is read, not locked; a pledge created by this chunk has no survey yet.
    stored = SURVEY.c.pledge_id == s.c.id
    same = ~differs(SURVEY.c, s.c, SURVEY_COMPARED)
    # One join (UPDATE … FROM) reads each stored survey once for both columns; a held pledge
    # without a survey keeps both NULL. Where the chunk created every pledge it holds (a first
    # import) no survey can be stored: one look at the stage spares the join, whose plan may
    # hash every stored survey.
    existed = s.c.id.isnot(None), s.c.state.is_distinct_from("c")
    if conn.execute(select(exists().where(*existed))).scalar_one():
        conn.execute(
            update(s).values(survey_id=SURVEY.c.id, survey_same=same).where(stored, *existed)
        )
    upsert = upsert_into(conn, SURVEY).from_select(
        ["pledge_id", *SURVEY_COMPARED],
        select(s.c.id, *(s.c[c] for c in SURVEY_COMPARED))
        .where(s.c.id.isnot(None), s.c.survey_same.isnot(True))
        .order_by(s.c.id),
    )
    new = upsert.excluded
    upsert = upsert.on_conflict_do_update(
        index_elements=["pledge_id"],
        set_={c: new[c] for c in SURVEY_COMPARED},
        where=differs(SURVEY.c, new, SURVEY_COMPARED),
    ).returning(SURVEY.c.id, SURVEY.c.pledge_id, created_flag(conn, SURVEY))
    record_written(
        conn,
        upsert,
        s,
        on={"id": "pledge_id"},
        copied={"survey_id": "id"},
        state="survey_state",
        mark="u",
    )
