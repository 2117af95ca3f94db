"""What every `comply` command shares: the typer app and its global options (home, config, Chroma server), the
settings they make, printing (text or --json) and failing in words, and who the audit trail names (cli:<OS user>).
The command groups (assistant/app/cli/main.py and the cli_*.py modules) import this; this imports none of them.
"""

from __future__ import annotations

import getpass
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Annotated

import typer

try:  # typer >= 0.20 runs on its own copy of click
    from typer._click.globals import get_current_context
except ImportError:
    from click import get_current_context

from assistant.adapters import AdapterError
from assistant.app.audit import AuditError
from assistant.app.users import PermissionDenied, UserError
from ingest.settings import Settings, SettingsError, configure_offline_environment, load_settings

app = typer.Typer(help="comply: answers from your regulation and policy documents, with verified citations.",
                  no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)
docs_app = typer.Typer(help="Manage the document library.", no_args_is_help=True)
app.add_typer(docs_app, name="docs")

JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]


class State:
    settings: Settings | None = None
    overrides: dict = {}


def settings() -> Settings:
    """The settings for this invocation (global options + env + config file)."""
    if State.settings is None:
        try:
            State.settings = load_settings(**State.overrides)
        except SettingsError as e:
            ctx = _current_context()  # the running command's --json, when it has one
            fail(str(e), bool(ctx is not None and ctx.params.get("as_json")) or "--json" in sys.argv)
    return State.settings


def _current_context():
    return get_current_context(silent=True)


def emit(data, as_json: bool, text: str | None = None) -> None:
    """Print JSON or human text."""
    if as_json:
        if is_dataclass(data):
            data = asdict(data)
        typer.echo(json.dumps(data, indent=2, ensure_ascii=False, default=str))
    elif text is not None:
        typer.echo(text)


def fail(message: str, as_json: bool = False, code: int = 1):
    """Show one error at the edge and exit non-zero."""
    if as_json:
        typer.echo(json.dumps({"error": message}))
    else:
        typer.secho(f"error: {message}", fg="red", err=True)
    raise typer.Exit(code)


@app.callback()
def main(
    home: Annotated[Path | None, typer.Option(help="State directory (env COMPLY_HOME, default ./.comply).")] = None,
    config: Annotated[Path | None, typer.Option("--config", help="TOML config file.")] = None,
    chroma_url: Annotated[str | None, typer.Option(help="Use a Chroma server, e.g. http://127.0.0.1:8000.")] = None,
):
    """Global options apply to every command."""
    configure_offline_environment()
    State.settings = None
    State.overrides = {"home": home, "config_file": config, "chroma_url": chroma_url}


def audit_user() -> str:
    """Who the audit trail names for a command run from this shell: cli:<OS user>."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli:unknown"


def open_library():
    from ingest.pipeline import Library  # lazy: loads the library code (0.1 s)

    return Library(settings())


def open_services(adapter: str | None = None):
    """The state this command's actions work on (assistant/app/services.py), opened as they need it: the same actions
    the app and the API call, with this process's own library lock (a single command has one thread; between
    processes the library's file lock orders the writers)."""
    from assistant.app.services import Services  # lazy: loads the answering code (0.3 s)

    return Services(settings(), adapter=adapter)


def admin_actions():
    """assistant.app.actions_admin, imported when a command uses it: it loads the answering pipeline's code (0.3 s)."""
    from assistant.app import actions_admin  # lazy: loads the answering code (0.3 s)

    return actions_admin


def cli_admin():
    """The user a command acts as: cli:<OS user> with the admin role (assistant.app.services.cli_user)."""
    from assistant.app.services import cli_user  # lazy: loads the answering code (0.3 s)

    return cli_user(audit_user())


@contextmanager
def acting(as_json: bool) -> Iterator[None]:
    """Run an action; what it refuses (a trail that cannot record it, a user-management or adapter error, a request
    that cannot be done as asked) is one error in words and exit 1."""
    try:
        yield
    except (AuditError, UserError, PermissionDenied, AdapterError, ValueError) as e:
        fail(str(e), as_json)
