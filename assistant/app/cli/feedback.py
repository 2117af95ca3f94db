"""`comply feedback export`: the answers users rated in the app, as evaluation JSON Lines (registered on the main app
by assistant.app.cli.main)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from assistant.app.cli.common import JsonOpt, acting, admin_actions, app, cli_admin, emit, fail, open_services
from ingest.types import iso_date, plural

feedback_app = typer.Typer(help="Export the users' thumbs up/down on answers, to grow the gold set.",
                           no_args_is_help=True)
app.add_typer(feedback_app, name="feedback")


@feedback_app.command("export")
def feedback_export(
    out: Annotated[Path | None, typer.Option("--out", help="File to write (default ./feedback-<time>.jsonl).")] = None,
    since: Annotated[str | None, typer.Option(help="Only feedback given on or after this date (YYYY-MM-DD, UTC).")
                     ] = None,
    gold: Annotated[bool, typer.Option("--gold", help="Only liked answers, in the exact gold format "
                                                      "(eval/datasets.py): ready for `comply eval run`.")] = False,
    as_json: JsonOpt = False,
):
    """Write every rated answer (question, answer, cited documents and pages, the user's verdict and comment) as
    JSON Lines; recorded in the audit trail as `feedback.export`."""
    try:
        since = iso_date(since, "--since")
    except ValueError as e:
        fail(str(e), as_json)
    dest = out or Path(f"feedback-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.jsonl")
    with acting(as_json):
        records = admin_actions().export_feedback(open_services(), cli_admin(), dest, since=since, gold=gold)
    emit({"path": str(dest), "records": records, "gold": gold}, as_json,
         f"wrote {plural(records, 'rated answer')} to {dest}")
