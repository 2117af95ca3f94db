"""The audited administration actions that the CLI and the app's admin tabs call: users (add, set role, remove,
reset password), adapters (activate, roll back), evaluation runs and the audit trail (export, verify). Each checks
the caller's permission (a refusal is recorded as `access.denied`), acts only if the trail can record it (fail
closed) and records what it did as the caller, with the caller's `context`. Kept apart from
assistant/app/actions.py (answers, documents, conversations: what every role does) because these are the admin's own
and reach into the fine-tuning registry and the evaluation runner."""

from __future__ import annotations

from pathlib import Path

from assistant.app.audit import AuditCheck, AuditError
from assistant.app.services import Services
from assistant.app.users import User
from eval.runner import run_eval
from finetune import adapters as registry


class ExportNotRecorded(AuditError):
    """An audit export whose record failed after the file was written: the file was deleted again."""

    def __init__(self, cause: AuditError):
        super().__init__(f"Not exported: the audit trail could not record the export ({cause}), so the file was "
                         "deleted again. An administrator can run `comply audit verify`.")


def add_user(services: Services, admin: User, name: str, role: str, password: str | None = None, *,
             context: dict | None = None) -> str:
    """Add a user; returns the password (the one given, or a generated one to show once). UserError when it cannot
    be (bad name or role, taken, weak password): then nothing is recorded."""
    services.permit(admin, "users", **(context or {}))
    name = (name or "").strip()
    with services.audit.recorded(admin.name, "user.add", name=name, role=role, **(context or {})):
        return services.users.add(name, role, password)


def set_role(services: Services, admin: User, name: str, role: str, *, context: dict | None = None) -> None:
    """Change a user's role (their logins end; the last admin cannot be demoted)."""
    services.permit(admin, "users", **(context or {}))
    with services.audit.recorded(admin.name, "user.set_role", name=name, role=role, sessions_revoked=True,
                                 **(context or {})):
        services.users.set_role(name, role)


def remove_user(services: Services, admin: User, name: str, *, context: dict | None = None) -> None:
    """Remove a user (their logins end; the last admin cannot be removed)."""
    services.permit(admin, "users", **(context or {}))
    with services.audit.recorded(admin.name, "user.remove", name=name, sessions_revoked=True, **(context or {})):
        services.users.remove(name)


def reset_password(services: Services, admin: User, name: str, password: str | None = None, *,
                   context: dict | None = None) -> str:
    """Give a user a new password (their logins end); returns it (the one given, or a generated one)."""
    services.permit(admin, "users", **(context or {}))
    with services.audit.recorded(admin.name, "user.reset_password", name=name, sessions_revoked=True,
                                 **(context or {})):
        return services.users.set_password(name, password)


def activate_adapter(services: Services, admin: User, name: str, force: bool = False, *,
                     context: dict | None = None) -> dict:
    """Make `name` the active adapter unless its release gate refuses it (and not `force`); recorded either way
    (`ok`, `previous` or `error`). The answers in progress finish first; the next question uses it."""
    services.permit(admin, "adapters", **(context or {}))
    with services.lock:
        with services.audit.recorded(admin.name, "adapter.activate", failures=True, adapter=name, force=force,
                                     **(context or {})) as record:
            outcome = registry.activate(services.settings, name, force=force)
            record["previous"] = outcome.get("previous")
        services.reload_assistant()
    return outcome


def rollback_adapter(services: Services, admin: User, *, context: dict | None = None) -> dict:
    """Go back to the previously active adapter (or the base model); AdapterError (not recorded) when there is
    nothing to go back to."""
    services.permit(admin, "adapters", **(context or {}))
    with services.lock:
        with services.audit.recorded(admin.name, "adapter.rollback", **(context or {})) as record:
            outcome = registry.rollback(services.settings)
            record.update(ok=True, active=outcome["active"], previous=outcome["previous"])
        services.reload_assistant()
    return outcome


def export_audit(services: Services, admin: User, dest: Path, fmt: str, *, since: str | None = None,
                 until: str | None = None, action: str | None = None, context: dict | None = None) -> int:
    """Write the trail (or the records from `since` to `until` of one `action`) to `dest` as `jsonl` or `csv`;
    returns how many records. The export is recorded once written; should that record fail, the file is deleted
    again (AuditUnavailable saying so), so no export exists that the trail does not show."""
    services.permit(admin, "audit.export", **(context or {}))
    if fmt not in ("jsonl", "csv"):
        raise ValueError(f"unknown format '{fmt}': use jsonl or csv")
    log = services.audit
    log.ready("audit.export")  # fail closed: no export that the trail cannot record
    log.export(dest, fmt, since=since, until=until, action=action)
    records = len(log.records(since, until, action))
    try:
        log.append(admin.name, "audit.export", format=fmt, since=since, until=until, filter_action=action,
                   records=records, **(context or {}))
    except AuditError as e:  # the trail failed in between: the export goes, so none exists that it does not show
        Path(dest).unlink(missing_ok=True)
        raise ExportNotRecorded(e) from e
    return records


def run_evaluation(services: Services, admin: User, dataset: Path, out: Path, *, loaded: bool = False,
                   context: dict | None = None, **options) -> dict:
    """Run a gold set through the pipeline into the run folder `out` (eval.runner.run_eval, which `options` go to);
    returns its metrics. With `loaded` (a server) the run uses the process's library and assistant. Done only if the
    trail can record it, beside the answers in progress (the library lock shared), and recorded as `eval.run`."""
    services.permit(admin, "eval", **(context or {}))
    services.audit.ready("eval.run")  # fail closed: no run that the trail cannot record
    with services.lock.shared():
        if loaded:
            options["library"] = services.library
            options["assistant"] = None if options.get("retrieval_only") else services.assistant
        metrics = run_eval(services.settings, dataset, out, **options)
    services.audit.append_after(admin.name, "eval.run", dataset=Path(dataset).name, run=Path(out).name,
                                limit=options.get("limit"), retrieval_only=bool(options.get("retrieval_only")),
                                **(context or {}))
    return metrics


def verify_audit(services: Services, admin: User, *, context: dict | None = None) -> AuditCheck:
    """Check the trail's hash chain and its signed anchor (a read: not recorded)."""
    services.permit(admin, "audit.export", **(context or {}))
    return services.audit.verify()
