"""SQLAlchemy models of the tables pledgeflow shares with the web app (DESIGN.md section 1)."""

from __future__ import annotations

import enum
from datetime import datetime
from decimal import Decimal
from typing import Any, cast

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Enum,
    ForeignKey,
    Identity,
    Index,
    Integer,
    MetaData,
    Numeric,
    String,
    Table,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# SQLite only auto-increments INTEGER PRIMARY KEY, so bigint keys are plain integers there.
BigId = BigInteger().with_variant(Integer(), "sqlite")
Money = Numeric(12, 2, asdecimal=True)
Timestamp = DateTime(timezone=True)
# Survey answers are compared on re-import to skip no-op updates; PostgreSQL's json type has
# no equality operator, so answers are jsonb there.
Answers = JSON().with_variant(JSONB(), "postgresql")


class UploadStatus(enum.StrEnum):
    """Lifecycle of an upload and of each of its chunks."""

    PENDING = "PENDING"
    PROCESSING = "PROCESSING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"


class ProductKind(enum.StrEnum):
    """What a product row stands for."""

    REWARD = "reward"
    ADDON = "addon"
    ITEM = "item"


upload_status = Enum(
    UploadStatus,
    name="upload_status",
    values_callable=lambda e: [m.value for m in e],
    validate_strings=True,
)
product_kind = Enum(
    ProductKind,
    name="product_kind",
    values_callable=lambda e: [m.value for m in e],
    validate_strings=True,
)


class Base(DeclarativeBase):
    """Declarative base with a naming convention, so migrations name constraints predictably."""

    metadata = MetaData(
        naming_convention={
            "ix": "ix_%(table_name)s_%(column_0_N_name)s",
            "uq": "uq_%(table_name)s_%(column_0_N_name)s",
            "ck": "ck_%(table_name)s_%(constraint_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }
    )
    type_annotation_map = {dict[str, Any]: JSON, Decimal: Money, datetime: Timestamp}


class Touched:
    """`updated_at`: set on insert, and on PostgreSQL moved by a trigger only when an update
    really changes the row (pledgeflow/migrations/touch.py)."""

    updated_at: Mapped[datetime] = mapped_column(server_default=func.now(), sort_order=1000)


class Project(Touched, Base):
    """A crowdfunding campaign of a shop."""

    __tablename__ = "project"
    __table_args__ = (UniqueConstraint("shop", "name"),)

    id: Mapped[int] = mapped_column(BigId, Identity(), primary_key=True)
    shop: Mapped[str] = mapped_column(String(255))
    name: Mapped[str] = mapped_column(String(255))
    currency: Mapped[str | None] = mapped_column(String(3))
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())


class CsvUpload(Touched, Base):
    """One uploaded file and, once processed, what became of it."""

    __tablename__ = "csv_upload"
    __table_args__ = (Index(None, "project_id"),)

    id: Mapped[int] = mapped_column(BigId, Identity(), primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("project.id"))
    shop: Mapped[str] = mapped_column(String(255))
    filename: Mapped[str] = mapped_column(Text)
    platform: Mapped[str | None] = mapped_column(String(32))
    status: Mapped[UploadStatus] = mapped_column(
        upload_status, server_default=UploadStatus.PENDING.value
    )
    total_rows: Mapped[int] = mapped_column(server_default="0")
    total_chunks: Mapped[int] = mapped_column(server_default="0")
    completed_chunks: Mapped[int] = mapped_column(server_default="0")
    failed_chunks: Mapped[int] = mapped_column(server_default="0")
    imported_rows: Mapped[int] = mapped_column(server_default="0")
    rejected_rows: Mapped[int] = mapped_column(server_default="0")
    stats: Mapped[dict[str, Any] | None]
    errors: Mapped[dict[str, Any] | None]
    # The explicit column mapping (canonical field -> header) the chunks are read with.
    mapping: Mapped[dict[str, Any] | None]
    flow_run_id: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    started_at: Mapped[datetime | None]
    completed_at: Mapped[datetime | None]


class CsvUploadChunk(Touched, Base):
    """A slice of an upload's rows, as `{"headers": [...], "rows": [[...], ...]}`."""

    __tablename__ = "csv_upload_chunk"
    __table_args__ = (
        UniqueConstraint("upload_id", "chunk_index"),
        Index(None, "upload_id", "status"),
        Index(None, "digest"),
    )

    id: Mapped[int] = mapped_column(BigId, Identity(), primary_key=True)
    upload_id: Mapped[int] = mapped_column(ForeignKey("csv_upload.id", ondelete="CASCADE"))
    chunk_index: Mapped[int]
    data: Mapped[dict[str, Any]]
    first_row: Mapped[int]
    row_count: Mapped[int]
    status: Mapped[UploadStatus] = mapped_column(
        upload_status, server_default=UploadStatus.PENDING.value
    )
    attempts: Mapped[int] = mapped_column(server_default="0")
    imported_rows: Mapped[int] = mapped_column(server_default="0")
    rejected_rows: Mapped[int] = mapped_column(server_default="0")
    errors: Mapped[dict[str, Any] | None]
    stats: Mapped[dict[str, Any] | None]
    # The data rows of this chunk a later row of the same upload supersedes, settled before
    # any chunk runs: `{"pledge": [row, ...], "backer": [row, ...]}`; null until settled.
    superseded: Mapped[dict[str, Any] | None]
    # Set on completion: a digest of the chunk's content and of every input its rows depend on
    # (`pledgeflow.chunk_digest`); a later chunk of the project with the same one may skip.
    digest: Mapped[str | None] = mapped_column(String(64))
    started_at: Mapped[datetime | None]
    completed_at: Mapped[datetime | None]
    # The flow run (or local claim token) holding the chunk: its own retry may take it back
    # at once, any other run only after the lease.
    claimed_by: Mapped[str | None] = mapped_column(String(100))


class Backer(Touched, Base):
    """A shop's customer, keyed by the trimmed, lower-cased email."""

    __tablename__ = "backer"
    __table_args__ = (UniqueConstraint("shop", "email"),)

    id: Mapped[int] = mapped_column(BigId, Identity(), primary_key=True)
    shop: Mapped[str] = mapped_column(String(255))
    email: Mapped[str] = mapped_column(String(320))
    name: Mapped[str | None] = mapped_column(Text)
    phone: Mapped[str | None] = mapped_column(Text)
    country: Mapped[str | None] = mapped_column(Text)
    external_id: Mapped[str | None] = mapped_column(Text)
    # The position (upload, data row) of the row that last changed the details; only a row from
    # a later position may change them, and an unchanged row leaves them (and this) alone.
    source_upload_id: Mapped[int] = mapped_column(BigInteger)
    source_row: Mapped[int]


class Product(Touched, Base):
    """A reward tier, add-on or item of a project, keyed by its kind and the platform's id
    for it (reward id, add-on id, SKU code), or its trimmed name where the file has no id."""

    __tablename__ = "product"
    __table_args__ = (UniqueConstraint("project_id", "kind", "product_key"),)

    id: Mapped[int] = mapped_column(BigId, Identity(), primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("project.id"))
    kind: Mapped[ProductKind] = mapped_column(product_kind)
    product_key: Mapped[str] = mapped_column(Text)
    name: Mapped[str] = mapped_column(Text)
    external_id: Mapped[str | None] = mapped_column(Text)
    price: Mapped[Decimal | None]
    currency: Mapped[str | None] = mapped_column(String(3))


class Pledge(Touched, Base):
    """A backer's pledge to a project, keyed by the platform's pledge key."""

    __tablename__ = "pledge"
    __table_args__ = (
        UniqueConstraint("project_id", "pledge_id"),
        Index(None, "backer_id"),
        Index(None, "product_id"),
        Index(None, "upload_id"),
    )

    id: Mapped[int] = mapped_column(BigId, Identity(), primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("project.id"))
    pledge_id: Mapped[str] = mapped_column(Text)
    backer_id: Mapped[int] = mapped_column(ForeignKey("backer.id"))
    product_id: Mapped[int | None] = mapped_column(ForeignKey("product.id"))
    amount: Mapped[Decimal | None]
    shipping_amount: Mapped[Decimal | None]
    currency: Mapped[str | None] = mapped_column(String(3))
    status: Mapped[str | None] = mapped_column(Text)
    pledged_at: Mapped[datetime | None]
    platform: Mapped[str] = mapped_column(String(32))
    # The position (upload, data row) of the row that last changed this pledge.
    upload_id: Mapped[int] = mapped_column(ForeignKey("csv_upload.id"))
    source_row: Mapped[int]


class Survey(Touched, Base):
    """The survey answers and shipping address of one pledge."""

    __tablename__ = "survey"

    id: Mapped[int] = mapped_column(BigId, Identity(), primary_key=True)
    pledge_id: Mapped[int] = mapped_column(ForeignKey("pledge.id"), unique=True)
    backer_id: Mapped[int] = mapped_column(ForeignKey("backer.id"), index=True)
    responded_at: Mapped[datetime | None]
    shipping_name: Mapped[str | None] = mapped_column(Text)
    shipping_address_1: Mapped[str | None] = mapped_column(Text)
    shipping_address_2: Mapped[str | None] = mapped_column(Text)
    shipping_city: Mapped[str | None] = mapped_column(Text)
    shipping_state: Mapped[str | None] = mapped_column(Text)
    shipping_postal_code: Mapped[str | None] = mapped_column(Text)
    shipping_country_name: Mapped[str | None] = mapped_column(Text)
    shipping_country_code: Mapped[str | None] = mapped_column(Text)
    shipping_phone: Mapped[str | None] = mapped_column(Text)
    delivery_notes: Mapped[str | None] = mapped_column(Text)
    answers: Mapped[dict[str, Any] | None] = mapped_column(Answers)


class Inventory(Touched, Base):
    """How many of an item or add-on a pledge is owed."""

    __tablename__ = "inventory"
    __table_args__ = (UniqueConstraint("survey_id", "product_id"), Index(None, "product_id"))

    id: Mapped[int] = mapped_column(BigId, Identity(), primary_key=True)
    survey_id: Mapped[int] = mapped_column(ForeignKey("survey.id"))
    product_id: Mapped[int] = mapped_column(ForeignKey("product.id"))
    quantity: Mapped[int]


DATA_TABLES = ("backer", "product", "pledge", "survey", "inventory")
# Every table pledgeflow owns, each after the tables it references.
TABLES = ("project", "csv_upload", "csv_upload_chunk", *DATA_TABLES)

# Core handles on the tables, typed for the set-based statements that use them.
PROJECT = cast(Table, Project.__table__)
UPLOAD = cast(Table, CsvUpload.__table__)
CHUNK = cast(Table, CsvUploadChunk.__table__)
BACKER = cast(Table, Backer.__table__)
PRODUCT = cast(Table, Product.__table__)
PLEDGE = cast(Table, Pledge.__table__)
SURVEY = cast(Table, Survey.__table__)
INVENTORY = cast(Table, Inventory.__table__)
