"""The audited administration actions that the CLI, the app's admin tabs and the API call: users (add, set role,
remove, reset password, API tokens), adapters and retriever models (register, activate, roll back), evaluation runs and the users' feedback exported for them, monitoring and the audit trail
(export, read, verify). Each checks
the caller's permission (a refusal is recorded as `access.denied`), acts only if the trail can record it (fail
closed) and records what it did as the caller, with the caller's `context`. Kept apart from
assistant/app/actions.py (answers, documents, conversations: what every role does) because these are the admin's own
and reach into the fine-tuning registry and the evaluation runner."""

from __future__ import annotations

import json
import os
from pathlib import Path

from assistant.app.audit import AuditCheck, AuditError
from assistant.app.conversations import feedback_line, gold_line
from assistant.app.monitoring import DayStats, daily_stats
from assistant.app.services import Services
from assistant.app.tokens import ApiToken
from assistant.app.users import User, UserError
from eval.runner import RunCancelled, run_eval
from finetune import adapters as registry
from finetune import retrievers


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


def list_users(services: Services, admin: User, *, context: dict | None = None) -> list[User]:
    """Every user and their role; recorded as `user.list`."""
    services.permit(admin, "users", **(context or {}))
    with services.audit.recorded(admin.name, "user.list", **(context or {})) as outcome:
        users = services.users.list()
        outcome["users"] = len(users)
    return users


def issue_token(services: Services, admin: User, name: str, label: str | None = None,
                expires_days: float | None = None, *, context: dict | None = None) -> tuple[ApiToken, str]:
    """An API token for user `name` (acting with their role; it ends when they are removed or their role changes):
    (the token, its secret, to be shown once; only its hash is kept). Recorded as `token.issue`."""
    services.permit(admin, "users", **(context or {}))
    user = services.users.get(name)
    if user is None:
        raise UserError(f"no user '{name}'")
    with services.audit.recorded(admin.name, "token.issue", name=user.name, role=user.role, label=label,
                                 expires_days=expires_days, **(context or {})) as outcome:
        token, secret = services.tokens.issue(user, label, expires_days)
        outcome.update(token_id=token.id, label=token.label, expires=token.expires)
    return token, secret


def list_tokens(services: Services, admin: User, name: str | None = None, *,
                context: dict | None = None) -> list[dict]:
    """The API tokens (of user `name`, or all; never a secret), each with its `state`: "active", or why the API
    refuses it (revoked, expired, its user removed or given another role). Recorded as `token.list`."""
    services.permit(admin, "users", **(context or {}))
    with services.audit.recorded(admin.name, "token.list", name=name, **(context or {})):
        return [{**t.to_dict(), "state": t.refusal(services.users.get(t.user)) or "active"}
                for t in services.tokens.list(name)]


def revoke_token(services: Services, admin: User, token_id: int, *, context: dict | None = None) -> ApiToken:
    """Revoke an API token: the API refuses it from the next call on. Recorded as `token.revoke`."""
    services.permit(admin, "users", **(context or {}))
    with services.audit.recorded(admin.name, "token.revoke", token_id=token_id, **(context or {})) as outcome:
        token = services.tokens.revoke(token_id)
        outcome["name"] = token.user
    return token


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


def export_feedback(services: Services, admin: User, dest: Path, *, since: str | None = None, gold: bool = False,
                    context: dict | None = None) -> int:
    """Write every rated answer (question, answer, cited documents and pages, the user's verdict and comment; with
    `gold`, only liked answers in the gold format of eval/datasets.py) given on or after `since` to `dest` as JSON
    Lines, private to the OS user (the questions are the users'); returns how many. Recorded as `feedback.export`
    once written; should that record fail, the file is deleted again (ExportNotRecorded)."""
    services.permit(admin, "eval", **(context or {}))
    services.audit.ready("feedback.export")  # fail closed: no export the trail cannot record
    lines = [line for owner, turn in services.conversations.rated(since)
             if (line := gold_line(owner, turn) if gold else feedback_line(owner, turn)) is not None]
    with open(os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w", encoding="utf-8") as f:
        f.writelines(json.dumps(line, ensure_ascii=False) + "\n" for line in lines)
    try:
        services.audit.append(admin.name, "feedback.export", since=since, gold=gold, records=len(lines),
                              file=Path(dest).name, **(context or {}))
    except AuditError as e:  # the trail failed in between: no export exists that it does not show
        Path(dest).unlink(missing_ok=True)
        raise ExportNotRecorded(e) from e
    return len(lines)


def run_evaluation(services: Services, admin: User, dataset: Path, out: Path, *, loaded: bool = False,
                   context: dict | None = None, **options) -> dict:
    """Run a gold set through the pipeline into the run folder `out` (eval.runner.run_eval, which `options` go to,
    `cancel` included); returns its metrics. With `loaded` (a server) the run uses the process's library and
    assistant. Done only if the trail can record it, beside the answers in progress (the library lock shared), and
    recorded as `eval.run`; a run stopped by its `cancel` event is recorded too (cancelled=True, with how many of its
    questions were done) before its RunCancelled goes on to the caller."""
    services.permit(admin, "eval", **(context or {}))
    services.audit.ready("eval.run")  # fail closed: no run that the trail cannot record
    record = {"dataset": Path(dataset).name, "run": Path(out).name, "limit": options.get("limit"),
              "retrieval_only": bool(options.get("retrieval_only"))}
    try:
        with services.lock.shared():
            if loaded:
                options["library"] = services.library
                options["assistant"] = None if options.get("retrieval_only") else services.assistant
            metrics = run_eval(services.settings, dataset, out, **options)
    except RunCancelled as stopped:
        services.audit.append_after(admin.name, "eval.run", **record, cancelled=True, done=stopped.done,
                                    total=stopped.total, **(context or {}))
        raise
    services.audit.append_after(admin.name, "eval.run", **record, **(context or {}))
    return metrics


def compare_adaptations(services: Services, admin: User, task, out: Path, *, progress: bool = True,
                        say=print, context: dict | None = None) -> dict:
    """Run (or continue) the adaptation comparison `task` (finetune.adaptation.Task) into `out`; returns its report.
    Done only if the trail can record it, beside the answers in progress (the library lock shared), and recorded
    as `adapt.compare` (task, rows done) whether it finished or stopped on an error."""
    from finetune.adaptation import compare  # lazy: loads the training code (0.5 s)

    services.permit(admin, "adapters", **(context or {}))
    services.audit.ready("adapt.compare")  # fail closed: no comparison that the trail cannot record
    record = {"dataset": Path(task.dataset).name, "out": str(out), "model": task.model,
              "strategies": task.strategies, "sizes": task.sizes}
    try:
        with services.lock.shared():
            report = compare(services.settings, services.library, task, out, progress=progress, say=say)
    except Exception as e:
        services.audit.append_after(admin.name, "adapt.compare", **record, error=str(e)[:300], **(context or {}))
        raise
    services.audit.append_after(admin.name, "adapt.compare", **record, rows=len(report["rows"]), **(context or {}))
    return report


def verify_audit(services: Services, admin: User, *, context: dict | None = None) -> AuditCheck:
    """Check the trail's hash chain and its signed anchor; the check and what it found are recorded as `audit.verify`
    (after it, so the records checked are the ones before it)."""
    services.permit(admin, "audit.export", **(context or {}))
    check = services.audit.verify()
    try:
        services.audit.append_after(admin.name, "audit.verify", intact=check.ok, records=check.records,
                                    first_bad_seq=check.first_bad_seq, **(context or {}))
    except AuditError:
        if check.ok:
            raise
        # a trail that is broken may refuse records: the check that found it is shown all the same
    return check


def read_audit(services: Services, admin: User, *, since: str | None = None, until: str | None = None,
               action: str | None = None, user: str | None = None, limit: int | None = None,
               context: dict | None = None) -> list[dict]:
    """The trail's records from `since` to `until` (UTC dates or times, inclusive), of one `action` (or family:
    `document` is every document.* action) and one `user`, the last `limit` of them; recorded as an `audit.export`
    in JSON before they are handed out. ValueError for a filter that is not a date or time."""
    services.permit(admin, "audit.export", **(context or {}))
    with services.audit.recorded(admin.name, "audit.export", failures=True, format="json", since=since, until=until,
                                 filter_action=action, filter_user=user, **(context or {})) as outcome:
        try:
            records = services.audit.records(since, until, action)
        except AuditError as e:
            raise ValueError(str(e)) from e
        if user:
            records = [r for r in records if str(r.get("user", "")).lower() == user.lower()]
        if limit is not None:
            records = records[-limit:]
        outcome["records"] = len(records)
    return records


def monitoring(services: Services, admin: User, *, context: dict | None = None) -> list[DayStats]:
    """Per-day questions, abstention, unsupported sentences, flagged answers and latency from the trail
    (assistant/app/monitoring.py); the look is recorded as `monitoring.view`."""
    services.permit(admin, "monitoring", **(context or {}))
    with services.audit.recorded(admin.name, "monitoring.view", **(context or {})) as outcome:
        stats = daily_stats(services.audit.records())
        outcome["days"] = len(stats)
    return stats


def register_adapter(services: Services, admin: User, source: Path, name: str | None = None, *,
                     context: dict | None = None) -> Path:
    """Copy an adapter folder (peft format + card.json) into the registry as `name`; recorded as `adapter.register`
    (refusals too: a folder that is not an adapter, a name taken)."""
    services.permit(admin, "adapters", **(context or {}))
    with services.audit.recorded(admin.name, "adapter.register", failures=True, source=str(source), adapter=name,
                                 **(context or {})) as outcome:
        target = registry.register(services.settings, Path(source), name)
        outcome["adapter"] = target.name
    return target


def ensure_default_adapter(services: Services, admin: User, *, context: dict | None = None) -> str | None:
    """Register and activate the adapter shipped for the configured generator when the registry is empty; recorded as
    `adapter.register` and `adapter.activate` (`shipped=True`) when it did, nothing when nothing was needed."""
    services.permit(admin, "adapters", **(context or {}))
    services.audit.ready("adapter.activate")  # fail closed: no activation the trail cannot record
    with services.lock:
        name = registry.ensure_default(services.settings)
        if name is not None:
            services.audit.append_after(admin.name, "adapter.register", ok=True, adapter=name, shipped=True,
                                        **(context or {}))
            services.audit.append_after(admin.name, "adapter.activate", ok=True, adapter=name, force=True,
                                        previous=None, shipped=True, **(context or {}))
    if name is not None:
        services.reload_assistant()
    return name


def register_retriever(services: Services, admin: User, kind: str, source: Path, name: str | None = None, *,
                       context: dict | None = None) -> Path:
    """Copy a trained embedder or reranker folder (with its card) into the retriever registry; recorded as
    `retriever.register` (refusals too)."""
    services.permit(admin, "adapters", **(context or {}))
    with services.audit.recorded(admin.name, "retriever.register", failures=True, kind=kind, source=str(source),
                                 model=name, **(context or {})) as outcome:
        target = retrievers.register(services.settings, kind, Path(source), name)
        outcome["model"] = target.name
    return target


def activate_retriever(services: Services, admin: User, kind: str, name: str, force: bool = False, *,
                       on_progress=None, context: dict | None = None) -> dict:
    """Make a registered embedder or reranker (or "base") the active one, unless its release gate refuses it (and
    not `force`); recorded as `retriever.activate` either way. An embedder re-embeds the library first while
    questions are still answered from the old index; the switch is atomic."""
    services.permit(admin, "adapters", **(context or {}))
    with services.audit.recorded(admin.name, "retriever.activate", failures=True, kind=kind, model=name,
                                 force=force, **(context or {})) as record:
        outcome = retrievers.activate(services.settings, kind, name, force=force, library=services.library,
                                      on_progress=on_progress)
        record.update({k: outcome[k] for k in ("previous", "changed", "forced", "gate", "chunks", "collection")
                       if k in outcome})
    services.reload_assistant()  # a reranker is loaded with the retriever: the next question takes the new one
    return outcome


def rollback_retriever(services: Services, admin: User, kind: str, *, on_progress=None,
                       context: dict | None = None) -> dict:
    """Go back to the embedder or reranker active before; recorded as `retriever.rollback` (refusals too)."""
    services.permit(admin, "adapters", **(context or {}))
    with services.audit.recorded(admin.name, "retriever.rollback", failures=True, kind=kind,
                                 **(context or {})) as record:
        outcome = retrievers.rollback(services.settings, kind, library=services.library, on_progress=on_progress)
        record.update(active=outcome["active"], previous=outcome["previous"])
    services.reload_assistant()
    return outcome
