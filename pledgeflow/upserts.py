"""Set-based upserts of a chunk's canonical frames, one statement per table and batch.

Every write is an upsert on the table's natural key, inside the caller's transaction. Rows are
sent sorted by key so that concurrent chunks lock shared rows in the same order and cannot
deadlock. Each function returns created / updated / unchanged counts.

A row whose values equal what is stored is not written. Backers and pledges keep the position
(upload, data row) of the row that last changed them, and only a row from a later position may
change them. Rows of the upload that a later row of the same upload supersedes were settled
before any chunk ran (`pledgeflow.settlement`): a superseded pledge is not written at all, a
superseded backer only created if missing. So a chunk never rewrites an unchanged row to
record its position, except in the one case `WriteTarget.advance` names.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
from sqlalchemy import ColumnElement, Connection, Table, and_, literal_column, or_, select, tuple_
from sqlalchemy.dialects import postgresql, sqlite

from pledgeflow.distinct import OUTCOMES, TableKeys, project_salt
from pledgeflow.transform import ChunkFrames
from schemas.layout import SURVEY_TEXT_FIELDS
from schemas.tables import BACKER, INVENTORY, PLEDGE, PRODUCT, SURVEY

BATCH_ROWS = 1000  # keeps every statement under SQLite's 32,766 bound parameters

# What each write path compares to tell an unchanged row from a changed one, and what a product
# may have filled in; named once for both paths.
PLEDGE_COMPARED = (
    "backer_id",
    "product_id",
    "amount",
    "shipping_amount",
    "currency",
    "status",
    "pledged_at",
    "platform",
)
BACKER_COMPARED = ("name", "phone", "country", "external_id")
PRODUCT_FILLED = ("external_id", "price", "currency")
PRODUCT_KEY = ("project_id", "kind", "product_key")
# The survey columns a chunk writes, named once in schemas/layout.py.
SURVEY_COLUMNS = ("responded_at", *SURVEY_TEXT_FIELDS, "answers")


@dataclass
class TableCounts:
    """What one chunk did to one table, and to which keys (see `pledgeflow.distinct`)."""

    created: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0
    keys: TableKeys = field(default_factory=TableKeys, repr=False, compare=False)

    def add(self, other: TableCounts) -> None:
        """Accumulate another count into this one."""
        self.created += other.created
        self.updated += other.updated
        self.unchanged += other.unchanged
        self.deleted += other.deleted
        for outcome in OUTCOMES:
            getattr(self.keys, outcome).update(getattr(other.keys, outcome))

    def as_dict(self) -> dict[str, int]:
        """Plain JSON-ready counts."""
        return {
            "created": self.created,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "deleted": self.deleted,
        }


@dataclass
class WriteTarget:
    """Where a chunk's rows go, which upload writes them, and how its rows were settled.

    `superseded_pledges` / `superseded_backers`: the chunk's data rows whose pledge key or email
    a later row of the same upload holds. `advance`: an unchanged backer or pledge still moves
    its position forward; needed while an older upload of the project may still write (its
    rows must not win over this one's), or when the upload was never settled.
    """

    shop: str
    project_id: int
    upload_id: int
    platform: str
    advance: bool = True
    superseded_pledges: frozenset[int] = frozenset()
    superseded_backers: frozenset[int] = frozenset()


@dataclass
class WriteCounts:
    """Counts per table for one chunk."""

    tables: dict[str, TableCounts] = field(default_factory=dict)

    def as_dict(self) -> dict[str, dict[str, int]]:
        """Plain JSON-ready form."""
        return {name: counts.as_dict() for name, counts in self.tables.items()}

    def keys_packed(self, project_id: int) -> dict[str, dict[str, str]]:
        """Each table's created / updated / unchanged keys as the project's digests."""
        salt = project_salt(project_id)
        return {name: counts.keys.encoded(salt) for name, counts in self.tables.items()}


def _records(frame: pd.DataFrame, columns: Sequence[str]) -> list[dict[str, Any]]:
    out = []
    for values in frame[list(columns)].itertuples(index=False, name=None):
        out.append({c: _plain(v) for c, v in zip(columns, values, strict=True)})
    return out


def _plain(value: Any) -> Any:
    if value is None or value is pd.NaT:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, pd.Timestamp):
        return value.to_pydatetime()
    if hasattr(value, "item") and not isinstance(value, dict | list | str):
        return value.item()
    return value


def _batches(rows: list[dict[str, Any]]) -> Iterable[list[dict[str, Any]]]:
    for start in range(0, len(rows), BATCH_ROWS):
        yield rows[start : start + BATCH_ROWS]


def _upsert(
    conn: Connection,
    table: Table,
    rows: list[dict[str, Any]],
    keys: Sequence[str],
    compared: Sequence[str],
    *,
    position: Sequence[str] = (),
    advance: bool = False,
) -> TableCounts:
    """Insert new keys; update existing ones whose `compared` columns differ.

    With `position`, an existing row is only overwritten by a row from a later position
    (upload, then data row); with `advance` too, a later row with equal content still moves
    the position forward, so a row from an earlier position that arrives afterwards cannot win.
    """
    counts = TableCounts()
    if not rows:
        return counts
    dialect = conn.dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    for batch in _batches(rows):
        stmt = insert(table).values(batch)
        excluded = stmt.excluded
        changed: ColumnElement[bool] = or_(
            *(table.c[c].is_distinct_from(excluded[c]) for c in compared)
        )
        later: ColumnElement[bool] | None = None
        if position:
            later = tuple_(*(excluded[c] for c in position)) > tuple_(
                *(table.c[c] for c in position)
            )
            changed = and_(later, changed)
        existing = _existing_keys(conn, table, keys, batch) if dialect != "postgresql" else None
        created_flag: ColumnElement[Any] = (
            literal_column("(xmax = 0)").label("created")
            if dialect == "postgresql"
            else literal_column("0").label("created")
        )
        upsert = stmt.on_conflict_do_update(
            index_elements=list(keys),
            set_={c: excluded[c] for c in (*compared, *position)},
            where=changed,
        ).returning(*(table.c[k] for k in keys), created_flag)
        written = conn.execute(upsert).all()
        if existing is None:
            created = sum(1 for r in written if r.created)
        else:
            created = sum(1 for r in written if tuple(r[: len(keys)]) not in existing)
        counts.created += created
        counts.updated += len(written) - created
        counts.unchanged += len(batch) - len(written)
        _record_keys(counts.keys, batch, keys, written, existing)
        if advance and later is not None:
            forward = insert(table).values(batch)
            conn.execute(
                forward.on_conflict_do_update(
                    index_elements=list(keys),
                    set_={c: forward.excluded[c] for c in position},
                    where=tuple_(*(forward.excluded[c] for c in position))
                    > tuple_(*(table.c[c] for c in position)),
                )
            )
    return counts


def _record_keys(
    record: TableKeys,
    batch: list[dict[str, Any]],
    keys: Sequence[str],
    written: Sequence[Any],
    existing: set[tuple[Any, ...]] | None,
) -> None:
    """Record each batch row's key as created, updated (written, existed) or unchanged."""
    outcome = {}
    for row in written:
        key = tuple(row[: len(keys)])
        new = row.created if existing is None else key not in existing
        outcome[key] = "created" if new else "updated"
    for row in batch:
        key = tuple(row[k] for k in keys)
        record.add(outcome.get(key, "unchanged"), key)


def _existing_keys(
    conn: Connection, table: Table, keys: Sequence[str], rows: list[dict[str, Any]]
) -> set[tuple[Any, ...]]:
    wanted = [tuple(r[k] for k in keys) for r in rows]
    found = conn.execute(
        select(*(table.c[k] for k in keys)).where(tuple_(*(table.c[k] for k in keys)).in_(wanted))
    ).all()
    return {tuple(r) for r in found}


def _ids_by(
    conn: Connection, table: Table, key: str, values: Sequence[Any], *scope: ColumnElement[bool]
) -> dict[Any, int]:
    ids: dict[Any, int] = {}
    for start in range(0, len(values), BATCH_ROWS):
        part = list(values[start : start + BATCH_ROWS])
        rows = conn.execute(
            select(table.c[key], table.c.id).where(table.c[key].in_(part), *scope)
        ).all()
        ids.update({k: i for k, i in rows})
    return ids


ProductIds = dict[tuple[str, str], int]


def upsert_products(
    conn: Connection, target: WriteTarget, products: pd.DataFrame
) -> tuple[ProductIds, TableCounts]:
    """Upsert the chunk's products on (project_id, kind, product_key); return their ids by
    (kind, product_key).

    Conflict rule: the name a product was created with stays; a missing external id, price or
    currency is filled in from the file, and values already stored win over later files.
    """
    table = PRODUCT
    rows = sorted(
        _records(products, ["kind", "product_key", "name", *PRODUCT_FILLED]),
        key=lambda r: (r["kind"], r["product_key"]),
    )
    for row in rows:
        row["project_id"] = target.project_id
    counts = TableCounts()
    if rows:
        dialect = conn.dialect.name
        insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        for batch in _batches(rows):
            stmt = insert(table).values(batch)
            fill = PRODUCT_FILLED
            existing = (
                None if dialect == "postgresql" else _existing_keys(conn, table, PRODUCT_KEY, batch)
            )
            written = conn.execute(
                stmt.on_conflict_do_update(
                    index_elements=list(PRODUCT_KEY),
                    set_={c: _coalesce(table.c[c], stmt.excluded[c]) for c in fill},
                    where=or_(
                        *(and_(table.c[c].is_(None), stmt.excluded[c].isnot(None)) for c in fill)
                    ),
                ).returning(
                    *(table.c[k] for k in PRODUCT_KEY),
                    literal_column("(xmax = 0)" if dialect == "postgresql" else "0").label(
                        "created"
                    ),
                )
            ).all()
            created = (
                sum(1 for r in written if r.created)
                if existing is None
                else sum(1 for r in written if tuple(r[:3]) not in existing)
            )
            counts.created += created
            counts.updated += len(written) - created
            counts.unchanged += len(batch) - len(written)
            _record_keys(counts.keys, batch, PRODUCT_KEY, written, existing)
    ids: ProductIds = {}
    for start in range(0, len(rows), BATCH_ROWS):
        part = [(r["kind"], r["product_key"]) for r in rows[start : start + BATCH_ROWS]]
        found = conn.execute(
            select(table.c.kind, table.c.product_key, table.c.id).where(
                table.c.project_id == target.project_id,
                tuple_(table.c.kind, table.c.product_key).in_(part),
            )
        ).all()
        ids.update({(str(kind), key): i for kind, key, i in found})
    return ids, counts


def _coalesce(current: ColumnElement[Any], new: ColumnElement[Any]) -> ColumnElement[Any]:
    from sqlalchemy import func

    return func.coalesce(current, new)


def upsert_backers(
    conn: Connection, target: WriteTarget, backers: pd.DataFrame, source_rows: pd.Series
) -> tuple[dict[str, int], TableCounts]:
    """Upsert backers on (shop, email).

    Conflict rule: name, phone, country and platform id come from the row at the latest
    position (upload, then data row); an earlier row never overwrites a later one, and a row
    equal to what is stored is not written. A row a later row of the upload supersedes only
    creates its backer if missing.
    """
    table = BACKER
    rows = _records(backers, ["email", *BACKER_COMPARED, "source_row"])
    for row in rows:
        row["shop"] = target.shop
        row["source_upload_id"] = target.upload_id
    rows.sort(key=lambda r: r["email"])
    live = [r for r in rows if r["source_row"] not in target.superseded_backers]
    superseded = [r for r in rows if r["source_row"] in target.superseded_backers]
    counts = _upsert(
        conn,
        table,
        live,
        ("shop", "email"),
        BACKER_COMPARED,
        position=("source_upload_id", "source_row"),
        advance=target.advance,
    )
    counts.add(_insert_missing(conn, table, superseded, ("shop", "email")))
    ids = _ids_by(conn, table, "email", [r["email"] for r in rows], table.c.shop == target.shop)
    return ids, counts


def _insert_missing(
    conn: Connection, table: Table, rows: list[dict[str, Any]], keys: Sequence[str]
) -> TableCounts:
    """Insert the rows whose key is not stored yet; leave the others alone."""
    counts = TableCounts()
    insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    for batch in _batches(rows):
        written = conn.execute(
            insert(table)
            .values(batch)
            .on_conflict_do_nothing(index_elements=list(keys))
            .returning(*(table.c[k] for k in keys))
        ).all()
        counts.created += len(written)
        counts.unchanged += len(batch) - len(written)
        made = {tuple(r) for r in written}
        for row in batch:
            key = tuple(row[k] for k in keys)
            counts.keys.add("created" if key in made else "unchanged", key)
    return counts


def upsert_pledges(
    conn: Connection,
    target: WriteTarget,
    pledges: pd.DataFrame,
    backer_ids: dict[str, int],
    product_ids: ProductIds,
) -> tuple[dict[str, int], TableCounts]:
    """Upsert pledges on (project_id, pledge_id); return the ids of the pledges this chunk
    holds the latest row of.

    Conflict rule: the row at the latest position (upload, then data row) wins; an earlier
    row never overwrites a later one, whatever order chunks commit in, and a row equal to what
    is stored is not written. A row a later row of the upload supersedes is not written.
    """
    table = PLEDGE
    rows = []
    for rec in _records(
        pledges,
        [
            "pledge_key",
            "email",
            "product_key",
            "amount",
            "shipping_amount",
            "currency",
            "status",
            "pledged_at",
            "source_row",
        ],
    ):
        if rec["source_row"] in target.superseded_pledges:
            continue
        reward = rec["product_key"]
        rows.append(
            {
                "project_id": target.project_id,
                "pledge_id": rec["pledge_key"],
                "backer_id": backer_ids[rec["email"]],
                "product_id": product_ids.get(("reward", reward)) if reward else None,
                "amount": rec["amount"],
                "shipping_amount": rec["shipping_amount"],
                "currency": rec["currency"],
                "status": rec["status"],
                "pledged_at": rec["pledged_at"],
                "platform": target.platform,
                "upload_id": target.upload_id,
                "source_row": rec["source_row"],
            }
        )
    rows.sort(key=lambda r: r["pledge_id"])
    counts = _upsert(
        conn,
        table,
        rows,
        ("project_id", "pledge_id"),
        PLEDGE_COMPARED,
        position=("upload_id", "source_row"),
        advance=target.advance,
    )
    # Held: the stored pledge is this row's, or an equal one from an earlier position.
    own = {r["pledge_id"]: (target.upload_id, r["source_row"]) for r in rows}
    held: dict[str, int] = {}
    for start in range(0, len(rows), BATCH_ROWS):
        part = rows[start : start + BATCH_ROWS]
        found = conn.execute(
            select(table.c.pledge_id, table.c.id, table.c.upload_id, table.c.source_row).where(
                table.c.project_id == target.project_id,
                table.c.pledge_id.in_([r["pledge_id"] for r in part]),
            )
        ).all()
        held.update({k: i for k, i, u, r in found if (u, r) <= own[k]})
    return held, counts


def upsert_surveys(
    conn: Connection,
    surveys: pd.DataFrame,
    pledge_ids: dict[str, int],
    backer_of: dict[str, int],
) -> tuple[dict[str, int], TableCounts]:
    """Upsert one survey per pledge on pledge_id, for the pledges this chunk holds.

    Conflict rule: the pledge's latest row replaces every survey column.
    """
    table = SURVEY
    rows = []
    for rec in _records(surveys, ["pledge_key", *SURVEY_COLUMNS]):
        key = rec.pop("pledge_key")
        if key in pledge_ids:
            rows.append({"pledge_id": pledge_ids[key], "backer_id": backer_of[key], **rec})
    rows.sort(key=lambda r: r["pledge_id"])
    counts = _upsert(conn, table, rows, ("pledge_id",), ("backer_id", *SURVEY_COLUMNS))
    ids = _ids_by(conn, table, "pledge_id", [r["pledge_id"] for r in rows])
    by_key = {key: ids[pid] for key, pid in pledge_ids.items() if pid in ids}
    return by_key, counts


def replace_inventory(
    conn: Connection,
    inventory: pd.DataFrame,
    survey_ids: dict[str, int],
    product_ids: ProductIds,
) -> TableCounts:
    """Make each held pledge's inventory equal the file's quantities.

    Conflict rule: the latest row is the whole truth for its pledge: lines it lacks are
    deleted (a dropped add-on disappears), changed quantities are updated.
    """
    table = INVENTORY
    counts = TableCounts()
    wanted: dict[tuple[int, int], int] = {}
    for rec in _records(inventory, ["pledge_key", "product_kind", "product_key", "quantity"]):
        if rec["pledge_key"] in survey_ids:
            product = product_ids[(rec["product_kind"], rec["product_key"])]
            key = (survey_ids[rec["pledge_key"]], product)
            wanted[key] = rec["quantity"]
    surveys = sorted(set(survey_ids.values()))
    current: dict[tuple[int, int], tuple[int, int]] = {}
    for start in range(0, len(surveys), BATCH_ROWS):
        part = surveys[start : start + BATCH_ROWS]
        for line_id, survey_id, product_id, quantity in conn.execute(
            select(table.c.id, table.c.survey_id, table.c.product_id, table.c.quantity).where(
                table.c.survey_id.in_(part)
            )
        ):
            current[(survey_id, product_id)] = (line_id, quantity)
    stale = sorted(line_id for key, (line_id, _) in current.items() if key not in wanted)
    for start in range(0, len(stale), BATCH_ROWS):
        conn.execute(table.delete().where(table.c.id.in_(stale[start : start + BATCH_ROWS])))
    counts.deleted = len(stale)
    rows = [
        {"survey_id": s, "product_id": p, "quantity": q} for (s, p), q in sorted(wanted.items())
    ]
    counts.add(_upsert(conn, table, rows, ("survey_id", "product_id"), ("quantity",)))
    return counts


def write_chunk(conn: Connection, target: WriteTarget, frames: ChunkFrames) -> WriteCounts:
    """Write all five tables for one chunk, in dependency order, inside `conn`'s transaction."""
    product_ids, products = upsert_products(conn, target, frames.products)
    backer_ids, backers = upsert_backers(conn, target, frames.backers, frames.backers["source_row"])
    pledge_ids, pledges = upsert_pledges(conn, target, frames.pledges, backer_ids, product_ids)
    backer_of = {
        key: backer_ids[email]
        for key, email in zip(frames.pledges["pledge_key"], frames.pledges["email"], strict=True)
    }
    survey_ids, surveys = upsert_surveys(conn, frames.surveys, pledge_ids, backer_of)
    inventory = replace_inventory(conn, frames.inventory, survey_ids, product_ids)
    return WriteCounts(
        {
            "backer": backers,
            "product": products,
            "pledge": pledges,
            "survey": surveys,
            "inventory": inventory,
        }
    )
