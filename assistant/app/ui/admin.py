"""The admin tabs: Adapters (list with card metrics, activate behind the release gate, roll back) and
Administration (audit trail verification and export, monitoring plots from the audit trail, users and roles).

Like the CLI, the app is an edge of the system, so it may use the fine-tuning registry."""

import tempfile
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

import gradio as gr
import pandas as pd

from assistant.app import actions_admin
from assistant.app.monitoring import plot_daily
from assistant.app.ui.services import Services, audit_shown, model_state_cell, refused, when_cell
from assistant.app.users import ROLES, PermissionDenied, User, UserError
from finetune import adapters as registry

USER_COLUMNS = ["User", "Role", "Created (UTC)"]
DAY_COLUMNS = ["Day", "Questions", "Abstention rate", "Unsupported sentences", "Answers flagged", "Latency p95 (ms)",
               "Adapters", "Document changes"]
ADAPTER_COLUMNS = ["Adapter", "Status", "Created (UTC)", "Base model", "Training data",
                   "Citation precision (validation)"]


def users_table(services: Services, users: list[User] | None = None) -> pd.DataFrame:
    """Every user (`users`, or the store's) with role and creation time (never a password or hash)."""
    return pd.DataFrame([[u.name, u.role, when_cell(u.created)]
                         for u in (services.users.list() if users is None else users)], columns=USER_COLUMNS)


def adapters_table(services: Services, listed: list[registry.AdapterInfo] | None = None) -> pd.DataFrame:
    """One row per registered adapter (`listed`, or the registry's) with what its card says."""
    rows = [[a.name, model_state_cell(a.active, a.error), when_cell(a.created), a.base_model or "",
             a.dataset or "", "not evaluated" if a.citation_precision is None else f"{a.citation_precision:.3f}"]
            for a in (registry.list_adapters(services.settings) if listed is None else listed)]
    return pd.DataFrame(rows, columns=ADAPTER_COLUMNS)


def comparisons_markdown(found: list[dict]) -> str:
    """Each comparison a registered adapter came from, every strategy it measured in plain words, with the
    adapters registered from its rows named (what the release gate then lets an admin activate)."""
    parts = []
    for c in found:
        head = f"\n\n**Compared side by side** ({c['title'] or 'report'}; `{c['report']}`)"
        if c["error"]:
            parts.append(f"{head}: {c['error']}.")
            continue
        lines = [f"- {rid}" + (f" (registered as **{', '.join(names)}**)" if names else "") + f": {plain}"
                 for rid, plain, names in c["rows"]]
        parts.append(head + ":\n\n" + "\n".join(lines))
    return "".join(parts)


class AdaptersTab:
    """Builds the Adapters tab and holds its handlers."""

    def __init__(self, services: Services):
        self.services = services

    def build(self) -> None:
        """Create the components and wire the events (inside a gr.Tab)."""
        self.summary = gr.Markdown()
        self.table = gr.Dataframe(value=pd.DataFrame(columns=ADAPTER_COLUMNS), interactive=False, label="Adapters",
                                  wrap=True)
        with gr.Row():
            self.name = gr.Dropdown(label="Adapter", choices=[], elem_id="adapter-name")
            self.force = gr.Checkbox(label="Override the release gate (recorded in the audit trail)")
            self.activate_button = gr.Button("Activate", variant="primary", scale=0, elem_id="activate-adapter")
            self.rollback_button = gr.Button("Roll back to the previous adapter", scale=0, elem_id="rollback-adapter")
        self.result = gr.Markdown(elem_id="adapter-result")
        outputs = [self.summary, self.table, self.name]
        self.activate_button.click(self.activate, [self.name, self.force], [self.result, *outputs],
                                   api_name="activate_adapter")
        self.rollback_button.click(self.rollback, None, [self.result, *outputs], api_name="rollback_adapter")

    def listing(self) -> tuple:
        """Summary line, adapters table and picker choices."""
        listed = registry.list_adapters(self.services.settings)
        table = adapters_table(self.services, listed)
        active = registry.active(self.services.settings)
        summary = (f"Base model: **{self.services.settings.generator_model}**. Answers use " +
                   (f"the adapter **{active}**." if active else "the base model (no adapter is active)."))
        if table.empty:
            summary += " No adapter is registered yet."
        else:  # each candidate in plain words: what it changed against the base model, and what it cost
            summary += "\n\n" + "\n".join(f"- **{a.name}**: {registry.describe(Path(a.path))}" for a in listed)
            summary += comparisons_markdown(registry.comparisons(listed))
        return summary, table, gr.update(choices=list(table["Adapter"]))

    def on_load(self, request: gr.Request) -> tuple:
        """The listing, for admins."""
        self.services.authorize(request, "adapters")
        return self.listing()

    def activate(self, name: str | None, force: bool, request: gr.Request) -> tuple:
        """Make an adapter the active one, unless its release gate refuses it (and force is not set)."""
        user = self.services.authorize(request, "adapters")
        if not name:
            return refused("Choose an adapter in the list first.", 4)
        try:
            with audit_shown():
                outcome = actions_admin.activate_adapter(self.services, user, name, force=force)
        except (registry.AdapterError, PermissionDenied) as e:  # the release gate's refusal names both numbers
            reason = str(e).replace("use --force", "tick 'Override the release gate'")
            return refused(f"Not activated: {reason}", 4)
        forced = " (release gate overridden)" if outcome.get("forced") else ""
        return (f"Adapter **{name}** is now active{forced}; the next question uses it.", *self.listing())

    def rollback(self, request: gr.Request) -> tuple:
        """Go back to the previously active adapter (or the base model)."""
        user = self.services.authorize(request, "adapters")
        try:
            with audit_shown():
                outcome = actions_admin.rollback_adapter(self.services, user)
        except (registry.AdapterError, PermissionDenied) as e:
            return refused(f"Not rolled back: {e}", 4)
        return (f"Rolled back from {outcome['previous']}; answers now use "
                f"**{outcome['active'] or 'the base model'}**.", *self.listing())



class AdminTab:
    """Builds the Administration tab (audit, monitoring, users) and holds its handlers."""

    def __init__(self, services: Services):
        self.services = services

    def build(self) -> None:
        """Create the components and wire the events (inside a gr.Tab)."""
        gr.Markdown("### Audit trail")
        with gr.Row():
            self.verify_button = gr.Button("Verify the audit trail", scale=0)
            self.format = gr.Radio(["CSV", "JSONL"], value="CSV", label="Export format")
            self.export_button = gr.Button("Export the audit trail", variant="primary", scale=0,
                                           elem_id="export-audit")
        self.audit_status = gr.Markdown(elem_id="audit-status")
        self.export_file = gr.File(label="Exported audit trail", interactive=False, elem_id="audit-file")
        gr.Markdown("### Monitoring (from the audit trail)")
        self.monitor_button = gr.Button("Refresh monitoring", scale=0)
        self.monitor_plot = gr.Image(label="Per day", type="pil", interactive=False)
        self.monitor_table = gr.Dataframe(value=pd.DataFrame(columns=DAY_COLUMNS), interactive=False,
                                          label="Per day")
        gr.Markdown("### Users")
        self.users = gr.Dataframe(value=pd.DataFrame(columns=USER_COLUMNS), interactive=False, label="Users")
        with gr.Row():
            self.new_name = gr.Textbox(label="User name")
            self.new_role = gr.Dropdown(list(ROLES), value="viewer", label="Role")
            self.new_password = gr.Textbox(label="Password (empty: generate one)", type="password")
            self.add_button = gr.Button("Add user", scale=0)
        with gr.Row():
            self.pick_user = gr.Dropdown(label="Existing user", choices=[])
            self.pick_role = gr.Dropdown(list(ROLES), label="New role")
            self.role_button = gr.Button("Change role", scale=0, elem_id="change-role")
            self.remove_button = gr.Button("Remove user", variant="stop", scale=0)
        self.user_result = gr.Markdown(elem_id="user-result")

        self.verify_button.click(self.verify, None, [self.audit_status], api_name="verify_audit")
        self.export_button.click(self.export, [self.format], [self.audit_status, self.export_file],
                                 api_name="export_audit")
        self.monitor_button.click(self.monitoring, None, [self.monitor_plot, self.monitor_table],
                                  api_name="monitoring")
        user_outputs = [self.user_result, self.users, self.pick_user, self.new_password]
        self.add_button.click(self.add_user, [self.new_name, self.new_role, self.new_password],
                              [*user_outputs, self.new_name], api_name="add_user")
        self.role_button.click(self.set_role, [self.pick_user, self.pick_role], user_outputs, api_name="set_role")
        self.remove_button.click(self.remove_user, [self.pick_user], user_outputs, api_name="remove_user")

    def on_load(self, request: gr.Request) -> tuple:
        """Users table and picker, and the monitoring plot and table, for admins."""
        user = self.services.authorize(request, "users")
        table = users_table(self.services, actions_admin.list_users(self.services, user))
        return table, gr.update(choices=list(table["User"])), *self.monitoring(request)

    def verify(self, request: gr.Request) -> str:
        """Check the hash chain of the audit trail."""
        user = self.services.authorize(request, "audit.export")
        check = actions_admin.verify_audit(self.services, user)
        if check.ok:
            return f"**Intact.** The audit trail is intact: {check.records} record(s), each linked to the one before."
        return (f"**Broken.** The audit trail is broken at record {check.first_bad_seq}: {check.reason}. Records before it "
                f"({check.records}) are intact.")

    def export(self, fmt: str, request: gr.Request) -> tuple:
        """Export the whole audit trail as CSV or JSONL for download."""
        user = self.services.authorize(request, "audit.export")
        fmt = (fmt or "CSV").lower()
        if fmt not in ("csv", "jsonl"):
            return refused("Choose CSV or JSONL.", 2)
        stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
        dest = Path(tempfile.mkdtemp(prefix="comply-audit-")) / f"comply-audit-{stamp}.{fmt}"
        with audit_shown():  # recorded once written; a record that fails takes the file back
            actions_admin.export_audit(self.services, user, dest, fmt)
        check = self.services.audit.verify()
        state = "intact" if check.ok else f"BROKEN at record {check.first_bad_seq}"
        return f"Exported {check.records} record(s) as {fmt.upper()}; the trail is {state}.", str(dest)

    def monitoring(self, request: gr.Request) -> tuple:
        """Per-day questions, abstention rate, unsupported sentences, flagged answers and latency p95, plotted and
        tabled."""
        user = self.services.authorize(request, "monitoring")
        from PIL import Image  # lazy: only admins draw the plot

        stats = actions_admin.monitoring(self.services, user)
        with tempfile.TemporaryDirectory(prefix="comply-monitor-") as tmp:
            path = plot_daily(stats, Path(tmp) / "monitoring.png")
            with Image.open(path) as image:
                plot = image.copy()
        rows = []
        for s in (asdict(s) for s in stats):
            rows.append([s["date"], s["questions"], _pct(s["abstention_rate"]), _pct(s["unsupported_sentence_share"]),
                         _pct(s["flagged_answer_share"]),
                         "" if s["latency_p95_ms"] is None else f"{s['latency_p95_ms']:.0f}",
                         ", ".join(s["adapters"]), s["document_changes"]])
        return plot, pd.DataFrame(rows, columns=DAY_COLUMNS)

    def _users_changed(self, message: str) -> tuple:
        table = users_table(self.services)
        return message, table, gr.update(choices=list(table["User"]), value=None), ""

    def add_user(self, name: str, role: str, password: str, request: gr.Request) -> tuple:
        """Add a user; a generated password is shown once."""
        admin = self.services.authorize(request, "users")
        given = password or None
        try:
            with audit_shown():
                password = actions_admin.add_user(self.services, admin, name, role, given)
        except (UserError, PermissionDenied) as e:
            return refused(str(e), 5)
        shown = "" if given else f" Their password is `{password}` (shown once: pass it on now)."
        return *self._users_changed(f"Added **{name.strip()}** as {role}.{shown}"), ""  # name box emptied

    def set_role(self, name: str | None, role: str | None, request: gr.Request) -> tuple:
        """Change a user's role (the last admin cannot be demoted)."""
        admin = self.services.authorize(request, "users")
        if not name or not role:
            return refused("Choose a user and a role first.", 4)
        try:
            with audit_shown():
                actions_admin.set_role(self.services, admin, name, role)
        except (UserError, PermissionDenied) as e:
            return refused(str(e), 4)
        return self._users_changed(f"**{name}** is now {role}.")

    def remove_user(self, name: str | None, request: gr.Request) -> tuple:
        """Remove a user (the last admin cannot be removed)."""
        admin = self.services.authorize(request, "users")
        if not name:
            return refused("Choose a user first.", 4)
        try:
            with audit_shown():
                actions_admin.remove_user(self.services, admin, name)
        except (UserError, PermissionDenied) as e:
            return refused(str(e), 4)
        return self._users_changed(f"Removed **{name}**.")


def _pct(value: float | None) -> str:
    return "" if value is None else f"{value:.0%}"
