"""`pledgeflow limits`: size Prefect's concurrency limits from PostgreSQL's connection budget."""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING, Annotated

import typer

from pledgeflow.settings import get_settings

if TYPE_CHECKING:
    from pledgeflow.limits import LimitPlan

limits_app = typer.Typer(
    help="Concurrency limits that keep every worker inside the database's connections.",
    no_args_is_help=True,
)

DEFAULT_RESERVE = 40


def _server_max_connections() -> int:
    from sqlalchemy import text

    from pledgeflow.database import get_engine

    engine = get_engine()
    if engine.dialect.name != "postgresql":
        raise typer.BadParameter("give --max-connections (the database is not PostgreSQL)")
    with engine.connect() as conn:
        return int(conn.execute(text("SHOW max_connections")).scalar_one())


MaxConnections = Annotated[
    int | None,
    typer.Option(help="PostgreSQL's max_connections; read from the database if omitted."),
]
Reserve = Annotated[
    int,
    typer.Option(help="Connections left for the web app, Prefect server, superusers, room."),
]


def _plan(max_connections: int | None, reserve: int) -> LimitPlan:
    """The limits for this budget, or exit 2 with the reason it is too small."""
    from pledgeflow.limits import BudgetTooSmallError, plan_limits

    settings = get_settings()
    try:
        return plan_limits(
            max_connections or _server_max_connections(),
            reserve,
            settings.task_concurrency,
            settings.shop_fair_share,
        )
    except BudgetTooSmallError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None


@limits_app.command("plan")
def limits_plan(
    max_connections: MaxConnections = None,
    reserve: Reserve = DEFAULT_RESERVE,
) -> None:
    """Print the limits `apply` would set, as JSON."""
    plan = _plan(max_connections, reserve)
    typer.echo(json.dumps(plan.as_dict()))


@limits_app.command("apply")
def limits_apply(
    max_connections: MaxConnections = None,
    reserve: Reserve = DEFAULT_RESERVE,
) -> None:
    """Create or update the limits on the Prefect server (run it after `prefect deploy`)."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    from pledgeflow.limits import apply_limits, prefect_api_configured

    if not prefect_api_configured():
        typer.echo(
            "error: PREFECT_API_URL is not set; limits belong on the Prefect server the "
            "workers use (a temporary local server would forget them)",
            err=True,
        )
        raise typer.Exit(2)
    plan = _plan(max_connections, reserve)

    async def apply() -> list[str]:
        async with get_client() as client:
            return await apply_limits(plan, client)

    try:
        lines = asyncio.run(apply())
    except ObjectNotFound:
        typer.echo(
            "error: a pledgeflow deployment is missing; run `prefect --no-prompt deploy --all` "
            "first",
            err=True,
        )
        raise typer.Exit(2) from None
    for line in lines:
        typer.echo(line)
    typer.echo(
        f"peak pledgeflow connections: {plan.peak_connections} of {plan.max_connections} "
        f"({plan.reserved} reserved; {plan.pool_size} per process)"
    )
