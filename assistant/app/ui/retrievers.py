"""The retrieval models section of the Adapters tab: the registered embedders and rerankers with their validation
numbers, activation through the release gate (an embedder re-embeds the library, with a progress bar, while
questions are still answered from the old index) and roll back. The same actions as `comply retrievers`."""

from __future__ import annotations

import gradio as gr
import pandas as pd

from assistant.app import actions_admin
from assistant.app.ui.services import Services, audit_shown, model_state_cell, refused, when_cell
from assistant.app.users import PermissionDenied
from finetune import retrievers

COLUMNS = ["Kind", "Model", "Status", "Validation MAP@10", "Without it", "Training data", "Registered (UTC)"]
KIND_LABELS = {"embedder": "Embedder (search)", "reranker": "Reranker (reorders the found passages)"}


def retrievers_table(services: Services) -> pd.DataFrame:
    """One row per registered embedder or reranker with what its card says."""
    def number(v):
        return "not measured" if v is None else f"{v:.3f}"

    rows = [[m.kind, m.name, model_state_cell(m.active, m.error), number(m.map10), number(m.baseline_map10),
             m.dataset or "", when_cell(m.registered)]
            for m in retrievers.list_models(services.settings)]
    return pd.DataFrame(rows, columns=COLUMNS)


class RetrieversSection:
    """Builds the section (inside the Adapters tab) and holds its handlers."""

    def __init__(self, services: Services):
        self.services = services

    def build(self) -> None:
        gr.Markdown("### Retrieval models")
        self.summary = gr.Markdown(elem_id="retrievers-summary")
        self.table = gr.Dataframe(value=pd.DataFrame(columns=COLUMNS), interactive=False, wrap=True,
                                  label="Embedders and rerankers", elem_id="retrievers-table")
        with gr.Row():
            self.kind = gr.Radio([(label, kind) for kind, label in KIND_LABELS.items()], value="reranker",
                                 label="Kind", elem_id="retriever-kind")
            self.name = gr.Dropdown(label="Model", choices=[], elem_id="retriever-name")
            self.force = gr.Checkbox(label="Override the release gate (recorded in the audit trail)")
            self.activate_button = gr.Button("Activate", variant="primary", scale=0, elem_id="activate-retriever")
            self.rollback_button = gr.Button("Roll back", scale=0, elem_id="rollback-retriever")
        self.result = gr.Markdown(elem_id="retriever-result")
        outputs = [self.summary, self.table, self.name]
        self.kind.change(self.choices, [self.kind], [self.name], api_name=False)
        self.activate_button.click(self.activate, [self.kind, self.name, self.force], [self.result, *outputs],
                                   api_name="activate_retriever", concurrency_id="retrievers")
        self.rollback_button.click(self.rollback, [self.kind], [self.result, *outputs], api_name="rollback_retriever",
                                   concurrency_id="retrievers")

    def listing(self, kind: str = "reranker") -> tuple:
        """Summary, table and the model picker's choices for `kind` (base included)."""
        settings = self.services.settings
        table = retrievers_table(self.services)
        embedder = retrievers.active(settings, "embedder")
        reranker = retrievers.active(settings, "reranker")
        summary = (f"Search embeds with **{embedder or 'the base model (' + settings.embedding_model + ')'}**. "
                   + (f"Found passages are reordered by the reranker **{reranker or 'shipped with comply'}**."
                      if settings.rerank else
                      f"Reranking is off (setting `rerank`); the relevance check uses the reranker "
                      f"**{reranker or 'shipped with comply'}**." if settings.relevance_check else
                      "Reranking is off (setting `rerank`): an activated reranker is used once it is on."))
        if table.empty:
            summary += " No retrieval model is registered yet (`comply retrievers register`)."
        return summary, table, self.choices(kind, table)

    def choices(self, kind: str, table: pd.DataFrame | None = None):
        table = retrievers_table(self.services) if table is None else table
        names = list(table[table["Kind"] == kind]["Model"]) if not table.empty else []
        return gr.update(choices=[retrievers.BASE, *names], value=None)

    def on_load(self, request: gr.Request) -> tuple:
        self.services.authorize(request, "adapters")
        return self.listing()

    def activate(self, kind: str, name: str | None, force: bool, request: gr.Request,
                 progress: gr.Progress = gr.Progress()) -> tuple:
        """Activate a model; an embedder re-embeds the library first, with a progress bar."""
        user = self.services.authorize(request, "adapters")
        if not name:
            return refused("Choose a model in the list first.", 4)

        def on_progress(done: int, total: int) -> None:
            progress((done, total), desc="Re-embedding the library", unit="chunks")

        try:
            with audit_shown():
                out = actions_admin.activate_retriever(self.services, user, kind, name, force=force,
                                                       on_progress=on_progress)
        except (retrievers.RetrieverError, PermissionDenied) as e:
            return refused("Not activated: " + str(e).replace("use --force", "tick 'Override the release gate'"), 4)
        said = f"The {kind} **{name}** is now active" + (" (release gate overridden)" if out.get("forced") else "")
        if "chunks" in out:
            said += f"; {out['chunks']} passages were re-embedded in {out['seconds']} s"
        return said + ".", *self.listing(kind)

    def rollback(self, kind: str, request: gr.Request, progress: gr.Progress = gr.Progress()) -> tuple:
        """Go back to the model of this kind that was active before."""
        user = self.services.authorize(request, "adapters")

        def on_progress(done: int, total: int) -> None:
            progress((done, total), desc="Re-embedding the library", unit="chunks")

        try:
            with audit_shown():
                out = actions_admin.rollback_retriever(self.services, user, kind, on_progress=on_progress)
        except (retrievers.RetrieverError, PermissionDenied) as e:
            return refused(f"Not rolled back: {e}", 4)
        return f"Rolled back from {out['previous']}; the {kind} is now **{out['active']}**.", *self.listing(kind)
