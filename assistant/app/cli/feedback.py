"""`comply feedback export`: the answers users rated in the app, as evaluation JSON Lines (registered on the main app
by assistant.app.cli.main)."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from assistant.app.audit import AuditError
from assistant.app.cli.common import JsonOpt, app, audit_user, emit, fail, ready_audit, settings
from assistant.app.conversations import ConversationStore, feedback_line, gold_line
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
    audit = ready_audit("feedback.export", as_json)  # fail closed: no export the trail cannot record
    rated = ConversationStore(settings().conversations_path).rated(since)
    lines = [line for owner, turn in rated
             if (line := gold_line(owner, turn) if gold else feedback_line(owner, turn)) is not None]
    dest = out or Path(f"feedback-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.jsonl")
    with open(os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w", encoding="utf-8") as f:
        f.writelines(json.dumps(line, ensure_ascii=False) + "\n" for line in lines)  # questions: private, as the home
    try:
        audit.append(audit_user(), "feedback.export", since=since, gold=gold, records=len(lines), file=dest.name)
    except AuditError as e:  # the trail failed in between: no export exists that it does not show
        dest.unlink(missing_ok=True)
        fail(f"Not exported: the audit trail could not record the export ({e}), so the file was deleted again. "
             "An administrator can run `comply audit verify`.", as_json)
    emit({"path": str(dest), "records": len(lines), "gold": gold}, as_json,
         f"wrote {plural(len(lines), 'rated answer')} to {dest}")
