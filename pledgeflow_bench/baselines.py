"""Two loaders the benchmark measures the pipeline against, on a synthetic 2020+ export.

- `load_hand_tuned`: the reference ceiling. One process, no Prefect, no pandera: each 5,000-row
  block is parsed with plain string operations, COPYed into one temporary table and written with
  one `INSERT … SELECT … ON CONFLICT DO UPDATE … WHERE … IS DISTINCT FROM …` per table, ids found
  by index probes, a pledge's inventory replaced. It keeps no source positions and no counts.
- `load_naive_orm`: what a first attempt looks like. One row at a time through the ORM: look each
  object up, create or update it, flush, commit every 5,000 rows.

Both read only the layout `pledgeflow_bench.exports` writes, skip the rows the importer would
reject, and fill the same five tables as the pipeline, so their row counts can be compared.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy import Engine, delete, insert, select
from sqlalchemy.orm import Session

from pledgeflow.staging import ensure_project
from pledgeflow_bench.exports import ADDONS, ITEMS
from schemas.tables import Backer, CsvUpload, Inventory, Pledge, Product, ProductKind, Survey

BLOCK_ROWS = 5000
SURVEY_TEXT = (
    ("shipping_name", "Shipping Name"),
    ("shipping_address_1", "Shipping Address 1"),
    ("shipping_address_2", "Shipping Address 2"),
    ("shipping_city", "Shipping City"),
    ("shipping_state", "Shipping State"),
    ("shipping_postal_code", "Shipping Postal Code"),
    ("shipping_country_name", "Shipping Country Name"),
    ("shipping_country_code", "Shipping Country Code"),
    ("shipping_phone", "Shipping Phone Number"),
    ("delivery_notes", "Shipping Delivery Notes"),
)
ANSWER_HEADERS = ("Bonus Support", "Fulfillment Status", "Notes", "What Is Your T-Shirt Size?")
# Add-on and item columns in file order, and the product each quantity counts.
QUANTITY_PRODUCTS = tuple(name for _, name, _ in ADDONS) + ITEMS


@dataclass(frozen=True)
class Target:
    """Where a baseline writes: a project, and an upload row the pledges can reference."""

    shop: str
    project_id: int
    upload_id: int


@dataclass(frozen=True)
class Parsed:
    """One importable row, typed just enough for the baselines."""

    row: int
    pledge_id: str
    email: str
    name: str | None
    uid: str | None
    country: str | None
    phone: str | None
    shipping_amount: Decimal | None
    reward: tuple[str, str, Decimal] | None  # (title, reward id, minimum)
    amount: Decimal | None
    status: str | None
    pledged_at: str
    responded_at: str | None
    survey: tuple[str | None, ...]
    answers: str
    quantities: tuple[int, ...]


def _money(cell: str) -> Decimal | None:
    digits = cell.replace("USD", "").replace("$", "").replace(",", "").strip()
    return Decimal(digits) if digits else None


DATE_SHAPE = re.compile(r"\d{4}/\d\d/\d\d, \d\d:\d\d")


def _date(cell: str) -> str | None:
    """`2020/04/24, 05:37` as ISO 8601 in UTC; ValueError for any other shape."""
    cell = cell.strip()
    if not cell:
        return None
    if not DATE_SHAPE.fullmatch(cell):
        raise ValueError(cell)
    return f"{cell[:10].replace('/', '-')} {cell[12:]}:00+00:00"


def _parsed_rows(path: Path, limit: int | None = None) -> Iterator[Parsed]:
    """The file's importable rows in order; rows the pipeline would reject are skipped."""
    with path.open(encoding="utf-8-sig", newline="") as handle:
        reader = csv.reader(handle)
        at = {h: i for i, h in reversed(list(enumerate(next(reader))))}
        first_quantity = at[f"[Addon: {ADDONS[0][0]}] {ADDONS[0][1]}"]
        for number, cells in enumerate(reader, start=1):
            if limit is not None and number > limit:
                return
            parsed = _parse(number, cells, at, first_quantity)
            if parsed is not None:
                yield parsed


def _parse(number: int, cells: Sequence[str], at: dict[str, int], q0: int) -> Parsed | None:
    email = cells[at["Email"]].strip().lower()
    key = cells[at["Backer Number"]].strip()
    try:
        amount = _money(cells[at["Pledge Amount"]])
        shipping = _money(cells[at["Shipping Amount"]])
        minimum = _money(cells[at["Backing Minimum"]])
        pledged_at = _date(cells[at["Pledged At"]])
        responded_at = _date(cells[at["Survey Response"]])
        quantities = tuple(int(c) for c in cells[q0 : q0 + len(QUANTITY_PRODUCTS)])
    except (InvalidOperation, ValueError):
        return None
    if not email or not key or pledged_at is None or min(quantities) < 0:
        return None
    title = cells[at["Reward Title"]].strip()

    def text(header: str) -> str | None:
        return cells[at[header]].strip() or None

    return Parsed(
        row=number,
        pledge_id=key,
        email=email,
        name=text("Backer Name"),
        uid=text("Backer UID"),
        country=text("Shipping Country"),
        phone=text("Shipping Phone Number"),
        shipping_amount=shipping,
        reward=(title, cells[at["Reward ID"]].strip(), minimum or Decimal(0)) if title else None,
        amount=amount,
        status=(text("Pledged Status") or "").lower() or None,
        pledged_at=pledged_at,
        responded_at=responded_at,
        survey=tuple(text(header) for _, header in SURVEY_TEXT),
        answers=json.dumps({h: v.strip() for h in ANSWER_HEADERS if (v := cells[at[h]]).strip()}),
        quantities=quantities,
    )


def prepare_target(engine: Engine, shop: str, project: str, filename: str) -> Target:
    """Create the project and an upload row for a baseline run."""
    with engine.begin() as conn:
        project_id = ensure_project(conn, shop, project, None)
        upload_id = conn.execute(
            insert(CsvUpload)
            .values(project_id=project_id, shop=shop, filename=filename, platform="kickstarter")
            .returning(CsvUpload.id)
        ).scalar_one()
    return Target(shop, project_id, int(upload_id))


RAW_COLUMNS = (
    "row_number int, pledge_id text, email text, name text, uid text, country text, phone text, "
    "shipping_amount numeric(12,2), product_id bigint, amount numeric(12,2), status text, "
    "pledged_at timestamptz, responded_at timestamptz, "
    + ", ".join(f"{column} text" for column, _ in SURVEY_TEXT)
    + ", answers jsonb, "
    + ", ".join(f"q{n} int" for n in range(len(QUANTITY_PRODUCTS)))
)
COPIED = [c.split()[0] for c in RAW_COLUMNS.split(", ")]
SURVEY_NAMES = [column for column, _ in SURVEY_TEXT]
HAND_TUNED_SQL = (
    """
INSERT INTO backer AS t (shop, email, name, phone, country, external_id, source_upload_id,
                         source_row)
SELECT DISTINCT ON (email) %(shop)s, email, name, phone, country, uid, %(upload)s, row_number
FROM bl_raw ORDER BY email, row_number DESC
ON CONFLICT (shop, email) DO UPDATE
SET name = excluded.name, phone = excluded.phone, country = excluded.country,
    external_id = excluded.external_id, source_upload_id = excluded.source_upload_id,
    source_row = excluded.source_row
WHERE (t.name, t.phone, t.country, t.external_id)
      IS DISTINCT FROM (excluded.name, excluded.phone, excluded.country, excluded.external_id)
""",
    """
UPDATE bl_raw r SET backer_id = (
    SELECT b.id FROM backer b WHERE b.shop = %(shop)s AND b.email = r.email)
""",
    """
INSERT INTO pledge AS t (project_id, pledge_id, backer_id, product_id, amount, shipping_amount,
                         currency, status, pledged_at, platform, upload_id, source_row)
SELECT %(project)s, pledge_id, backer_id, product_id, amount, shipping_amount, 'USD', status,
       pledged_at, 'kickstarter', %(upload)s, row_number
FROM bl_raw ORDER BY pledge_id
ON CONFLICT (project_id, pledge_id) DO UPDATE
SET backer_id = excluded.backer_id, product_id = excluded.product_id, amount = excluded.amount,
    shipping_amount = excluded.shipping_amount, status = excluded.status,
    pledged_at = excluded.pledged_at, upload_id = excluded.upload_id,
    source_row = excluded.source_row
WHERE (t.backer_id, t.product_id, t.amount, t.shipping_amount, t.status, t.pledged_at)
      IS DISTINCT FROM (excluded.backer_id, excluded.product_id, excluded.amount,
                        excluded.shipping_amount, excluded.status, excluded.pledged_at)
""",
    """
UPDATE bl_raw r SET pledge_row_id = (
    SELECT p.id FROM pledge p WHERE p.project_id = %(project)s AND p.pledge_id = r.pledge_id)
""",
    f"""
INSERT INTO survey AS t (pledge_id, backer_id, responded_at, {", ".join(SURVEY_NAMES)}, answers)
SELECT pledge_row_id, backer_id, responded_at, {", ".join(SURVEY_NAMES)}, answers
FROM bl_raw ORDER BY pledge_row_id
ON CONFLICT (pledge_id) DO UPDATE
SET backer_id = excluded.backer_id, responded_at = excluded.responded_at,
    {", ".join(f"{c} = excluded.{c}" for c in SURVEY_NAMES)}, answers = excluded.answers
WHERE (t.backer_id, t.responded_at, {", ".join(f"t.{c}" for c in SURVEY_NAMES)}, t.answers)
      IS DISTINCT FROM (excluded.backer_id, excluded.responded_at,
                        {", ".join(f"excluded.{c}" for c in SURVEY_NAMES)}, excluded.answers)
""",
    """
UPDATE bl_raw r SET survey_id = (SELECT s.id FROM survey s WHERE s.pledge_id = r.pledge_row_id)
""",
    """
CREATE TEMPORARY TABLE IF NOT EXISTS bl_lines (survey_id bigint, product_id bigint, quantity int)
ON COMMIT DELETE ROWS
""",
    """
INSERT INTO bl_lines
SELECT r.survey_id, v.product_id, max(v.quantity)
FROM bl_raw r CROSS JOIN LATERAL (VALUES """
    + ", ".join(f"(%(p{n})s, r.q{n})" for n in range(len(QUANTITY_PRODUCTS)))
    + """) v (product_id, quantity)
WHERE v.quantity > 0 GROUP BY r.survey_id, v.product_id
""",
    """
DELETE FROM inventory i
WHERE i.survey_id = ANY(ARRAY(SELECT survey_id FROM bl_raw ORDER BY survey_id))
  AND NOT EXISTS (SELECT 1 FROM bl_lines l
                  WHERE l.survey_id = i.survey_id AND l.product_id = i.product_id)
""",
    """
INSERT INTO inventory AS t (survey_id, product_id, quantity)
SELECT survey_id, product_id, quantity FROM bl_lines ORDER BY survey_id, product_id
ON CONFLICT (survey_id, product_id) DO UPDATE SET quantity = excluded.quantity
WHERE t.quantity IS DISTINCT FROM excluded.quantity
""",
)


def _product_ids(
    conn: psycopg.Connection[Any], target: Target, block: list[Parsed]
) -> dict[str, int]:
    """Upsert the block's reward tiers, add-ons and items on (project_id, kind, product_key);
    return product ids by name (an item named like an add-on is that add-on)."""
    products: dict[str, tuple[str, str, str | None, Decimal | None, str | None]] = {
        r.reward[0]: ("reward", r.reward[1] or r.reward[0], r.reward[1], r.reward[2], "USD")
        for r in block
        if r.reward
    }
    for addon_id, name, _ in ADDONS:
        products.setdefault(name, ("addon", str(addon_id), str(addon_id), None, None))
    for name in ITEMS:
        products.setdefault(name, ("item", name, None, None, None))
    with conn.cursor() as cursor:
        cursor.executemany(
            "INSERT INTO product (project_id, name, kind, product_key, external_id, price, "
            "currency) VALUES (%s, %s, %s, %s, %s, %s, %s) "
            "ON CONFLICT (project_id, kind, product_key) DO NOTHING",
            [(target.project_id, name, *spec) for name, spec in sorted(products.items())],
        )
        cursor.execute(
            "SELECT kind::text, product_key, id FROM product WHERE project_id = %s",
            (target.project_id,),
        )
        ids = {(kind, key): id_ for kind, key, id_ in cursor.fetchall()}
        return {name: ids[(spec[0], spec[1])] for name, spec in products.items()}


def load_hand_tuned(dsn: str, path: Path, target: Target) -> int:
    """Load `path` with COPY and one set-based upsert per table; return the rows written."""
    written = 0
    with psycopg.connect(dsn) as conn:
        conn.execute("SET TIME ZONE 'UTC'")
        conn.execute("SET jit = off")
        conn.commit()
        block: list[Parsed] = []
        for parsed in _parsed_rows(path):
            block.append(parsed)
            if len(block) == BLOCK_ROWS:
                written += _write_block(conn, target, block)
                block = []
        if block:
            written += _write_block(conn, target, block)
    return written


def _write_block(conn: psycopg.Connection[Any], target: Target, block: list[Parsed]) -> int:
    with conn.transaction():
        ids = _product_ids(conn, target, block)
        params: dict[str, Any] = {
            "shop": target.shop,
            "project": target.project_id,
            "upload": target.upload_id,
            **{f"p{n}": ids[name] for n, name in enumerate(QUANTITY_PRODUCTS)},
        }
        with conn.cursor() as cursor:
            cursor.execute(
                f"CREATE TEMPORARY TABLE IF NOT EXISTS bl_raw ({RAW_COLUMNS}, backer_id bigint, "
                "pledge_row_id bigint, survey_id bigint) ON COMMIT DELETE ROWS"
            )
            # A pledge key repeated in the block: the later row wins.
            latest = {r.pledge_id: r for r in block}
            with cursor.copy(f"COPY bl_raw ({', '.join(COPIED)}) FROM STDIN") as copy:
                for r in latest.values():
                    copy.write_row(
                        (
                            r.row,
                            r.pledge_id,
                            r.email,
                            r.name,
                            r.uid,
                            r.country,
                            r.phone,
                            r.shipping_amount,
                            ids[r.reward[0]] if r.reward else None,
                            r.amount,
                            r.status,
                            r.pledged_at,
                            r.responded_at,
                            *r.survey,
                            r.answers,
                            *r.quantities,
                        )
                    )
            for sql in HAND_TUNED_SQL:
                cursor.execute(sql, params)
    return len(block)


def load_naive_orm(engine: Engine, path: Path, target: Target, rows: int) -> int:
    """Load the first `rows` rows of `path` one at a time through the ORM; return rows written."""
    written = 0
    with Session(engine) as session:
        for parsed in _parsed_rows(path, limit=rows):
            _write_one(session, target, parsed)
            written += 1
            if written % BLOCK_ROWS == 0:
                session.commit()
        session.commit()
    return written


def _product(
    session: Session, project_id: int, name: str, kind: str, key: str, **values: Any
) -> Product:
    product = session.scalar(
        select(Product).where(
            Product.project_id == project_id, Product.kind == kind, Product.product_key == key
        )
    )
    if product is None:
        product = Product(
            project_id=project_id, name=name, kind=ProductKind(kind), product_key=key, **values
        )
        session.add(product)
        session.flush()
    return product


def _write_one(session: Session, target: Target, r: Parsed) -> None:
    backer = session.scalar(
        select(Backer).where(Backer.shop == target.shop, Backer.email == r.email)
    )
    if backer is None:
        backer = Backer(shop=target.shop, email=r.email)
        session.add(backer)
    backer.name, backer.phone, backer.country, backer.external_id = (
        r.name,
        r.phone,
        r.country,
        r.uid,
    )
    backer.source_upload_id, backer.source_row = target.upload_id, r.row
    session.flush()
    reward = (
        _product(
            session,
            target.project_id,
            r.reward[0],
            "reward",
            r.reward[1] or r.reward[0],
            external_id=r.reward[1],
            price=r.reward[2],
            currency="USD",
        )
        if r.reward
        else None
    )
    pledge = session.scalar(
        select(Pledge).where(
            Pledge.project_id == target.project_id, Pledge.pledge_id == r.pledge_id
        )
    )
    if pledge is None:
        pledge = Pledge(project_id=target.project_id, pledge_id=r.pledge_id)
        session.add(pledge)
    pledge.backer_id, pledge.product_id = backer.id, reward.id if reward else None
    pledge.amount, pledge.shipping_amount, pledge.currency = r.amount, r.shipping_amount, "USD"
    pledge.status, pledge.platform = r.status, "kickstarter"
    pledge.pledged_at = datetime.fromisoformat(r.pledged_at)
    pledge.upload_id, pledge.source_row = target.upload_id, r.row
    session.flush()
    survey = session.scalar(select(Survey).where(Survey.pledge_id == pledge.id))
    if survey is None:
        survey = Survey(pledge_id=pledge.id)
        session.add(survey)
    survey.backer_id = backer.id
    survey.responded_at = datetime.fromisoformat(r.responded_at) if r.responded_at else None
    for (column, _), value in zip(SURVEY_TEXT, r.survey, strict=True):
        setattr(survey, column, value)
    survey.answers = json.loads(r.answers)
    session.flush()
    owed: dict[int, int] = {}
    for (addon_id, name, _), quantity in zip(ADDONS, r.quantities, strict=False):
        product = _product(
            session, target.project_id, name, "addon", str(addon_id), external_id=str(addon_id)
        )
        owed[product.id] = max(owed.get(product.id, 0), quantity)
    addons = {name: str(addon_id) for addon_id, name, _ in ADDONS}
    for name, quantity in zip(ITEMS, r.quantities[len(ADDONS) :], strict=True):
        kind, key = ("addon", addons[name]) if name in addons else ("item", name)
        product = _product(session, target.project_id, name, kind, key)
        owed[product.id] = max(owed.get(product.id, 0), quantity)
    for product_id, quantity in owed.items():
        line = session.scalar(
            select(Inventory).where(
                Inventory.survey_id == survey.id, Inventory.product_id == product_id
            )
        )
        if quantity > 0 and line is None:
            session.add(Inventory(survey_id=survey.id, product_id=product_id, quantity=quantity))
        elif quantity > 0 and line is not None:
            line.quantity = quantity
        elif line is not None:
            session.execute(delete(Inventory).where(Inventory.id == line.id))
    session.flush()
