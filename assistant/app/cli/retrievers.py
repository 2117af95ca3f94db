"""`comply retrievers`: the retriever-model registry (finetune/retrievers.py) from the shell: list, register,
activate through the release gate (an embedder re-embeds the library, with a progress bar), roll back."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from tqdm import tqdm

from assistant.app.cli.common import (
    JsonOpt,
    acting,
    admin_actions,
    app,
    cli_admin,
    emit,
    open_services,
    settings,
)

retrievers_app = typer.Typer(help="The retriever-model registry (embedders, rerankers): list, register, activate "
                             "(with a release gate; an embedder re-embeds the library), roll back.",
                             no_args_is_help=True)
app.add_typer(retrievers_app, name="retrievers")

KindArg = Annotated[str, typer.Argument(help="embedder or reranker.")]


class _Bar:
    """A tqdm bar of chunks re-embedded, made on the first report (rerankers never report)."""

    def __init__(self, as_json: bool):
        self.as_json, self.bar = as_json, None

    def __call__(self, done: int, total: int) -> None:
        if self.as_json:
            return
        if self.bar is None:
            self.bar = tqdm(total=total, unit="chunk", desc="re-embedding", file=sys.stderr, dynamic_ncols=True)
        self.bar.n = done
        self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


@retrievers_app.command("list")
def retrievers_list(
    kind: Annotated[str | None, typer.Option(help="Only embedders or only rerankers.")] = None,
    as_json: JsonOpt = False,
):
    """The registered embedders and rerankers; * marks the active one; validation MAP@10 with and without it."""
    from finetune import retrievers  # lazy: loads the training code (~0.5 s)

    s = settings()
    with acting(as_json):
        rows = [r.to_dict() for r in retrievers.list_models(s, kind)]
        active = {k: retrievers.active(s, k) or retrievers.BASE for k in retrievers.KINDS}

    def line(r: dict) -> str:
        numbers = (f"MAP@10 {r['map10']:.3f} (without it {r['baseline_map10']:.3f})"
                   if r["map10"] is not None and r["baseline_map10"] is not None else "no validation MAP@10")
        return (f"{'*' if r['active'] else ' '} {r['kind']:<8} {r['name']:<28} {numbers}  {r['dataset'] or '-'}"
                + (f"\n    DAMAGED: {r['error']}" if r["error"] else ""))

    text = "\n".join([f"active: embedder {active['embedder']}, reranker {active['reranker']}",
                      *(line(r) for r in rows)] if rows else
                     [f"active: embedder {active['embedder']}, reranker {active['reranker']} (none registered)"])
    emit({"active": active, "models": rows}, as_json, text)


@retrievers_app.command("register")
def retrievers_register(
    kind: KindArg,
    path: Annotated[Path, typer.Argument(help="A model folder written by `comply adapt embedder|reranker`.")],
    name: Annotated[str | None, typer.Option(help="Name in the registry (default: the folder's name).")] = None,
    as_json: JsonOpt = False,
):
    """Copy a trained embedder or reranker (with its card) into the registry (recorded as retriever.register)."""
    with acting(as_json):
        target = admin_actions().register_retriever(open_services(), cli_admin(), kind, path, name)
    emit({"kind": kind, "name": target.name, "path": str(target)}, as_json, f"registered {kind} {target.name}")


@retrievers_app.command("activate")
def retrievers_activate(
    kind: KindArg,
    name: Annotated[str, typer.Argument(help="A registered name, or 'base' for the configured model.")],
    force: Annotated[bool, typer.Option("--force", help="Skip the release gate (recorded).")] = False,
    as_json: JsonOpt = False,
):
    """Make NAME the active embedder or reranker. An embedder re-embeds the whole library into a new index and
    switches to it when complete (questions are answered from the old one meanwhile; an interruption leaves it)."""
    bar = _Bar(as_json)
    try:
        with acting(as_json):
            result = admin_actions().activate_retriever(open_services(), cli_admin(), kind, name, force=force,
                                                        on_progress=bar)
    finally:
        bar.close()
    done = (f"; {result['chunks']} chunks re-embedded in {result['seconds']} s" if "chunks" in result else "")
    emit(result, as_json, f"active {kind}: {result['active']} (was {result['previous']})"
         + (" (release gate overridden)" if result.get("forced") else "") + done)


@retrievers_app.command("rollback")
def retrievers_rollback(kind: KindArg, as_json: JsonOpt = False):
    """Go back to the embedder or reranker active before (an embedder re-embeds the library again)."""
    bar = _Bar(as_json)
    try:
        with acting(as_json):
            result = admin_actions().rollback_retriever(open_services(), cli_admin(), kind, on_progress=bar)
    finally:
        bar.close()
    emit(result, as_json, f"active {kind}: {result['active']} (was {result['previous']})")
