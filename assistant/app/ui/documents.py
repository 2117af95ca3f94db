"""The Documents tab: the library table for everyone; upload, supersede and delete for editors and admins.
Each file succeeds or fails on its own and says why; every change is written to the audit trail."""

from pathlib import Path

import gradio as gr
import pandas as pd
from gradio.utils import get_upload_folder

from assistant.app import actions
from assistant.app.actions import add_documents, delete_document
from assistant.app.ui.services import Services, audit_shown, parse_date, refused, when_cell
from assistant.app.ui.uploads import remove_uploads
from assistant.app.users import User, allowed
from ingest.pipeline import IngestReport
from ingest.types import DocumentRecord

# "comply version" counts the versions comply holds of a document (1, 2, ...), not the document's own ("Version 4.2")
COLUMNS = ["Title", "comply version", "Effective date", "Status", "Pages", "Passages", "File", "Document id",
           "Added (UTC)"]


def library_table(records: list[DocumentRecord]) -> pd.DataFrame:
    """The library as a table (the documents in force, or every version)."""
    rows = [[r.title, r.version, r.effective_date or "", r.status_word, r.pages, r.chunks,
             r.file_name, r.document_id, when_cell(r.ingested_at)] for r in records]
    return pd.DataFrame(rows, columns=COLUMNS)


def live_documents(services: Services) -> list[tuple[str, str]]:
    """(title and id, document id) of every document that has a live version, for the supersede/delete pickers."""
    seen: dict[str, str] = {}
    for r in services.library.catalog.documents():
        if r.status in ("active", "superseded") and r.document_id not in seen:
            seen[r.document_id] = f"{r.title} ({r.document_id})"
    return [(label, doc_id) for doc_id, label in sorted(seen.items())]


def _effective_date(text: str | None) -> tuple[str | None, tuple | None]:
    """The effective date typed for an upload or a new version (None when the box is empty) and no refusal, or no
    date and the refusal (of the handler's 5 outputs) saying why the text is not one."""
    try:
        return parse_date(text, "effective date"), None
    except gr.Error as e:
        return None, refused(e.message, 5)


def report_markdown(report: IngestReport) -> str:
    """One line per file: what happened, or why it failed."""
    lines = []
    for f in report.files:
        name = Path(f.file).name
        if f.status == "failed":
            lines.append(f"- **{name}**: NOT ADDED. {f.error}")
            continue
        what = {"added": f"added as *{f.title}* ({f.document_id})",
                "new_version": f"added as version {f.version} of *{f.title}* ({f.document_id})",
                "unchanged": f"already in the library as *{f.title}* ({f.document_id}), unchanged"}.get(f.status,
                                                                                                  f.status)
        extra = f"; replaces {', '.join(f.superseded)}" if f.superseded else ""
        lines.append(f"- **{name}**: {what}, {f.pages} pages, {f.chunks} passages{extra}")
        lines.extend(f"  - warning: {w}" for w in f.warnings)
    failed = len(report.failed)
    summary = (f"**{len(report.files) - failed} of {len(report.files)} file(s) added or already present**"
               + (f", **{failed} not added** (see below)" if failed else "") + f" in {report.seconds:.1f}s.")
    return "\n".join([summary, *lines])


class DocumentsTab:
    """Builds the Documents tab and holds its handlers."""

    def __init__(self, services: Services):
        self.services = services

    def build(self) -> None:
        """Create the components and wire the events (inside a gr.Tab)."""
        with gr.Row():
            self.show_all = gr.Checkbox(label="Show superseded and deleted versions", value=False)
            self.refresh_button = gr.Button("Refresh", size="sm", scale=0)
        self.table = gr.Dataframe(value=pd.DataFrame(columns=COLUMNS), interactive=False, elem_id="library",
                                  label="Library", wrap=True,  # widths keep short headers on one line
                                  column_widths=["22%", "7%", "10%", "9%", "6%", "8%", "14%", "14%", "10%"])
        # No file_types: Gradio would refuse a whole batch for one .exe without naming it; each file is checked on
        # its own at ingest and a refused one is named with its reason.
        with gr.Column(visible=False) as self.write_area:
            gr.Markdown("### Change the library")
            with gr.Tab("Add documents"):
                self.files = gr.File(label="Files (PDF, DOCX, HTML, Markdown, text, passage JSON)",
                                     file_count="multiple", elem_id="upload-files")
                self.upload_date = gr.Textbox(label="Effective date (optional, YYYY-MM-DD; otherwise read from "
                                              "the document)")
                self.upload_button = gr.Button("Add to library", variant="primary", elem_id="upload-button")
            with gr.Tab("New version of a document"):
                self.supersede_doc = gr.Dropdown(label="Document to replace", choices=[])
                self.supersede_file = gr.File(label="The new version (one file)", file_count="single")
                self.supersede_date = gr.Textbox(label="Effective date of the new version (optional, YYYY-MM-DD)")
                self.supersede_button = gr.Button("Upload as new version", variant="primary")
            with gr.Tab("Delete a document"):
                self.delete_doc = gr.Dropdown(label="Document", choices=[], elem_id="delete-doc")
                self.delete_version = gr.Number(label="Only this version (empty: all versions)", precision=0,
                                                value=None)
                self.delete_confirm = gr.Checkbox(label="I understand the document will no longer be searched "
                                                  "(it stays in the audit trail)", elem_id="delete-confirm")
                self.delete_button = gr.Button("Delete", variant="stop", elem_id="delete-button")
        self.result = gr.Markdown(elem_id="documents-result")

        pickers = [self.supersede_doc, self.delete_doc]
        self.show_all.change(self.list_documents, [self.show_all], [self.table], api_name=False)
        self.refresh_button.click(self.list_documents, [self.show_all], [self.table], api_name="library")
        changed = [self.result, self.table, *pickers]
        self.changes = [
            self.upload_button.click(self.upload, [self.files, self.upload_date, self.show_all],
                                     [*changed, self.files], api_name="upload_documents"),
            self.supersede_button.click(self.supersede, [self.supersede_doc, self.supersede_file,
                                                         self.supersede_date, self.show_all],
                                        [*changed, self.supersede_file], api_name="supersede_document"),
            self.delete_button.click(self.delete, [self.delete_doc, self.delete_version, self.delete_confirm,
                                                   self.show_all], [*changed, self.delete_confirm],
                                     api_name="delete_document"),
        ]

    def on_load(self, request: gr.Request) -> tuple:
        """Table, pickers and the visibility of the write actions for the logged-in user."""
        user = self.services.authorize(request, "documents.read")
        can_write = allowed(user.role, "documents.write")
        choices = live_documents(self.services) if can_write else []
        table = library_table(actions.list_documents(self.services, user))
        return (table, gr.update(visible=can_write), gr.update(choices=choices),
                gr.update(choices=choices))

    def list_documents(self, show_all: bool, request: gr.Request) -> pd.DataFrame:
        """The library table (recorded as library.list)."""
        user = self.services.authorize(request, "documents.read")
        return library_table(actions.list_documents(self.services, user, all_versions=show_all))

    def _after_change(self, message: str, show_all: bool) -> tuple:
        choices = live_documents(self.services)
        catalog = self.services.library.catalog  # the table after a change: part of the change's own record
        records = catalog.documents(include_deleted=True) if show_all else catalog.documents(status="active")
        return (message, library_table(records), gr.update(choices=choices, value=None),
                gr.update(choices=choices, value=None))

    def _ingest(self, paths: list[str], action: str, user: User, progress, **options) -> IngestReport:
        files = [0, 1]  # the file being ingested, of how many

        def on_progress(stage: str, done: int, total: int, detail: str) -> None:
            if stage == "file" and total:
                files[:] = [done, total]
                progress(done / total, desc=f"File {min(done + 1, total)} of {total}: {detail}")
            elif stage == "pages":
                progress(files[0] / files[1], desc=f"File {files[0] + 1} of {files[1]}: {detail}")
            elif stage == "embed" and total:
                # the bar moves through the file as its chunks are embedded (most of a long PDF's time)
                progress((files[0] + done / total) / files[1], desc=f"File {files[0] + 1} of {files[1]}: {detail}")

        with audit_shown():
            try:
                return add_documents(self.services, user, paths, action, progress=on_progress, **options)
            except ValueError as e:
                raise gr.Error(str(e), print_exception=False) from e

    def upload(self, files: list | None, effective_date: str, show_all: bool, request: gr.Request,
               progress=gr.Progress()) -> tuple:
        """Add uploaded files to the library, each on its own; show per-file results."""
        user = self.services.authorize(request, "documents.write")
        paths = [str(f) for f in files or []]
        if not paths:
            return refused("Choose one or more files to add first.", 5)
        effective, refusal = _effective_date(effective_date)
        if refusal:
            return refusal
        try:
            report = self._ingest(paths, "document.upload", user, progress, effective_date=effective)
        finally:
            remove_uploads(paths, Path(get_upload_folder()))  # the library keeps its own copy
        return *self._after_change(report_markdown(report), show_all), None

    def supersede(self, document_id: str | None, file: str | None, effective_date: str, show_all: bool,
                  request: gr.Request, progress=gr.Progress()) -> tuple:
        """Add one file as the new version of a chosen document."""
        user = self.services.authorize(request, "documents.write")
        if not document_id:
            return refused("Choose the document that the new file replaces.", 5)
        if not file:
            return refused("Choose the file of the new version.", 5)
        effective, refusal = _effective_date(effective_date)
        if refusal:
            return refusal
        try:
            report = self._ingest([str(file)], "document.supersede", user, progress, supersedes=document_id,
                                  effective_date=effective)
        finally:
            remove_uploads([str(file)], Path(get_upload_folder()))
        return *self._after_change(report_markdown(report), show_all), None

    def delete(self, document_id: str | None, version: float | None, confirm: bool, show_all: bool,
               request: gr.Request) -> tuple:
        """Delete a document (or one version of it) from search; the catalog keeps it as deleted."""
        user = self.services.authorize(request, "documents.write")
        if not document_id:
            return refused("Choose the document to delete.", 5)
        if not confirm:
            return refused("Tick the confirmation box to delete the document.", 5)
        # An empty number box arrives as None or 0 depending on the browser; versions start at 1, so both mean all.
        version = int(version) if version not in (None, "") and int(version) > 0 else None
        with audit_shown():
            try:
                keys = delete_document(self.services, user, document_id, version)
            except KeyError:
                return refused(f"There is no live document '{document_id}'"
                               + (f" version {version}" if version is not None else "") + ".", 5)
        return *self._after_change(f"Deleted {', '.join(keys)}: no longer searched.", show_all), False
