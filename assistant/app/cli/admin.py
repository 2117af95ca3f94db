"""`comply serve`, `comply users ...` and `comply audit ...` commands (registered on the main app by assistant.app.cli.main)."""

from __future__ import annotations

import sys
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from assistant.app.audit import AuditError, AuditLog
from assistant.app.cli.common import (
    JsonOpt,
    acting,
    admin_actions,
    app,
    cli_admin,
    emit,
    fail,
    open_services,
    settings,
)
from assistant.app.monitoring import plot_daily
from assistant.app.users import UserError, UserStore

users_app = typer.Typer(help="Manage who may log in to the app and what they may do.", no_args_is_help=True)
audit_app = typer.Typer(help="Export, verify and summarise the audit trail.", no_args_is_help=True)
app.add_typer(users_app, name="users")
app.add_typer(audit_app, name="audit")

RoleOpt = Annotated[str, typer.Option("--role", help="viewer (chat), editor (+ documents) or admin (everything).")]




def open_users():
    return UserStore(settings().users_path)


def open_audit():
    return AuditLog.open(settings())


def read_password(as_json: bool) -> str:
    """The first line of stdin, without its newline (so a password never appears in the shell history)."""
    line = sys.stdin.readline().rstrip("\r\n")
    if not line:
        fail("--password-stdin was given but stdin is empty", as_json)
    return line


@users_app.command("add")
def users_add(
    name: str,
    role: RoleOpt = "viewer",
    password_stdin: Annotated[bool, typer.Option("--password-stdin", help="Read the password from stdin "
                                                 "instead of generating one.")] = False,
    as_json: JsonOpt = False,
):
    """Add a user; a generated password is printed once."""
    password = read_password(as_json) if password_stdin else None
    with acting(as_json):
        given = admin_actions().add_user(open_services(), cli_admin(), name, role, password)
    generated = None if password_stdin else given
    data = {"name": name, "role": role, **({"password": generated} if generated else {})}
    text = f"added {name} ({role})" + (f"\npassword (shown once): {generated}" if generated else "")
    emit(data, as_json, text)


@users_app.command("list")
def users_list(as_json: JsonOpt = False):
    """List users and their roles (recorded as user.list)."""
    with acting(as_json):
        users = admin_actions().list_users(open_services(), cli_admin())
    emit([{"name": u.name, "role": u.role, "created": u.created} for u in users], as_json,
         "\n".join(f"{u.name:<24} {u.role:<7} {u.created}" for u in users) or "(no users)")


@users_app.command("remove")
def users_remove(name: str, as_json: JsonOpt = False):
    """Remove a user (the last admin cannot be removed)."""
    with acting(as_json):
        admin_actions().remove_user(open_services(), cli_admin(), name)
    emit({"removed": name}, as_json, f"removed {name}")


@users_app.command("set-role")
def users_set_role(name: str, role: RoleOpt, as_json: JsonOpt = False):
    """Change a user's role (the last admin cannot be demoted)."""
    with acting(as_json):
        admin_actions().set_role(open_services(), cli_admin(), name, role)
    emit({"name": name, "role": role}, as_json, f"{name} is now {role}")


@users_app.command("reset-password")
def users_reset_password(
    name: str,
    password_stdin: Annotated[bool, typer.Option("--password-stdin", help="Read the new password from stdin "
                                                 "instead of generating one.")] = False,
    as_json: JsonOpt = False,
):
    """Give a user a new password; a generated one is printed once."""
    password = read_password(as_json) if password_stdin else None
    with acting(as_json):
        given = admin_actions().reset_password(open_services(), cli_admin(), name, password)
    generated = None if password_stdin else given
    emit({"name": name, **({"password": generated} if generated else {})}, as_json,
         f"new password for {name}" + (f" (shown once): {generated}" if generated else " set"))


def token_row(token: dict) -> str:
    """One line of `comply users tokens`: id, user, label, created, expires, last used, and whether it works."""
    return (f"{token['id']:>4} {token['user']:<16} {token['label']:<16} {token['created']:<25} "
            f"{token['expires'] or 'never':<25} {token['last_used'] or 'never':<25} {token['state']}")


@users_app.command("token")
def users_token(
    name: str,
    expires: Annotated[float | None, typer.Option("--expires", help="Days until it stops working (default: "
                                                  "never; revoke it with `comply users revoke-token`).")] = None,
    label: Annotated[str | None, typer.Option("--name", help="A label saying what the token is for.")] = None,
    as_json: JsonOpt = False,
):
    """Issue an API token for a user; it is printed once (only its hash is kept). It acts with the user's role, and
    stops working when the user is removed or their role changes."""
    with acting(as_json):
        token, secret = admin_actions().issue_token(open_services(), cli_admin(), name, label, expires)
    text = (f"token {token.id} for {token.user} ({token.role}), '{token.label}', expires {token.expires or 'never'}"
            f"\ntoken (shown once): {secret}")
    emit({**token.to_dict(), "token": secret}, as_json, text)


@users_app.command("tokens")
def users_tokens(name: Annotated[str | None, typer.Argument(help="Only this user's tokens.")] = None,
                 as_json: JsonOpt = False):
    """List API tokens (never the tokens themselves): id, user, label, created, expires, last used, revoked."""
    with acting(as_json):
        tokens = admin_actions().list_tokens(open_services(), cli_admin(), name)
    head = f"{'id':>4} {'user':<16} {'label':<16} {'created':<25} {'expires':<25} {'last used':<25} state"
    emit(tokens, as_json, "\n".join([head, *map(token_row, tokens)]) if tokens else "(no tokens)")


@users_app.command("revoke-token")
def users_revoke_token(token_id: Annotated[int, typer.Argument(metavar="ID", help="The token's id "
                                                               "(`comply users tokens`).")],
                       as_json: JsonOpt = False):
    """Revoke an API token: it is refused from the next call on."""
    with acting(as_json):
        token = admin_actions().revoke_token(open_services(), cli_admin(), token_id)
    emit(token.to_dict(), as_json, f"revoked token {token.id} of {token.user} ('{token.label}')")


@audit_app.command("export")
def audit_export(
    fmt: Annotated[str, typer.Option("--format", help="jsonl or csv.")] = "jsonl",
    out: Annotated[Path | None, typer.Option("--out", help="File to write (default ./audit-<time>.<format>).")] = None,
    since: Annotated[str | None, typer.Option(help="From this date/time (UTC, inclusive).")] = None,
    until: Annotated[str | None, typer.Option(help="Up to this date/time (UTC, inclusive).")] = None,
    action: Annotated[str | None, typer.Option(help="Only this action, e.g. answer or document.")] = None,
    as_json: JsonOpt = False,
):
    """Export the audit trail as JSON Lines or CSV (an unfiltered JSONL export verifies on its own)."""
    if fmt not in ("jsonl", "csv"):
        fail(f"unknown format '{fmt}': use jsonl or csv", as_json)
    dest = out or Path(f"audit-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.{fmt}")
    with acting(as_json):  # recorded once written; a record that fails takes the file back
        records = admin_actions().export_audit(open_services(), cli_admin(), dest, fmt, since=since, until=until,
                                               action=action)
    emit({"path": str(dest), "format": fmt, "records": records}, as_json, f"wrote {records} records to {dest}")


@audit_app.command("verify")
def audit_verify(as_json: JsonOpt = False):
    """Check the hash chain; exits non-zero naming the first broken record."""
    with acting(as_json):
        check = admin_actions().verify_audit(open_services(), cli_admin())
    if check.ok:
        text = f"ok: {check.records} records, chain intact" + (f", head {check.last_hash}" if check.last_hash else "")
        text += f", anchored at record {check.anchored_seq}" if check.anchored_seq is not None else ""
        text += f"\nnote: {check.note}" if check.note else ""
    else:
        text = f"BROKEN at seq {check.first_bad_seq}: {check.reason} ({check.records} records intact before it)"
    emit(check, as_json, text)
    if not check.ok:
        raise typer.Exit(1)


@audit_app.command("stats")
def audit_stats(
    plot: Annotated[Path | None, typer.Option("--plot", help="Also draw the daily series into this PNG.")] = None,
    as_json: JsonOpt = False,
):
    """Per-day questions, abstention rate, unsupported sentence share, flagged answer share and latency p95, from the
    audit trail (recorded as monitoring.view)."""
    with acting(as_json):
        stats = admin_actions().monitoring(open_services(), cli_admin())
    if plot is not None:
        plot_daily(stats, plot)

    def pct(x):
        return "-" if x is None else f"{x:.0%}"

    lines = [f"{'date':<10} {'questions':>9} {'abstained':>9} {'unsupported':>11} {'flagged':>7} {'p95 ms':>8}  adapters"]
    lines += [f"{s.date:<10} {s.questions:>9} {pct(s.abstention_rate):>9} {pct(s.unsupported_sentence_share):>11} "
              f"{pct(s.flagged_answer_share):>7} "
              f"{'-' if s.latency_p95_ms is None else f'{s.latency_p95_ms:.0f}':>8}  {', '.join(s.adapters) or '-'}"
              for s in stats]
    if plot is not None:
        lines.append(f"plot: {plot}")
    data = {"days": [asdict(s) for s in stats], **({"plot": str(plot)} if plot else {})}
    emit(data, as_json, "\n".join(lines) if stats else "(no answers in the audit trail)")


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Interface to listen on (default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default 7860).")] = None,
    as_json: JsonOpt = False,
):
    """Serve the browser app (chat, documents, evaluation, adapters, audit) until interrupted."""
    from assistant.app.ui.main import launch  # lazy: gradio takes ~4 s to import

    s = settings()
    host, port = host or s.host, port or s.port
    emit({"url": f"http://{host}:{port}"}, as_json)
    try:
        launch(s, host, port)
    except (UserError, AuditError) as e:  # COMPLY_ADMIN_PASSWORD too weak, or a trail that cannot record it
        fail(f"cannot create the first admin: {e}", as_json)
