"""The `comply` command line: thin commands that parse, call the library and print (text or --json).

This module is the edge of the system: it composes every stage, so it may import all of them.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from tqdm import tqdm

# each group of commands registers itself on `app` when imported
from assistant.app.cli import adapt, admin, evaluate, feedback, retrievers, training  # noqa: F401  (each registers its commands)
from assistant.app.cli.common import (
    JsonOpt,
    acting,
    app,
    cli_admin,
    docs_app,
    emit,
    fail,
    open_library,
    open_services,
)
from assistant.types import Answer
from assistant.when import describe
from ingest.types import plural, printable


@app.command()
def ingest(
    paths: Annotated[list[Path], typer.Argument(help="Files and folders to ingest.")],
    supersedes: Annotated[str | None, typer.Option(help="Document id this file is a new version of.")] = None,
    effective_date: Annotated[str | None, typer.Option(help="Date the document takes effect (YYYY-MM-DD).")] = None,
    title: Annotated[str | None, typer.Option(help="Title to record instead of the one found in the file.")] = None,
    follow_symlinks: Annotated[bool, typer.Option(
        "--follow-symlinks", help="Read what symbolic links point to (in a folder: only files inside it).")] = False,
    as_json: JsonOpt = False,
):
    """Ingest PDF, DOCX, HTML, Markdown, text and passage JSON/JSONL files into the library. Exits 1 when a file
    failed, or when nothing was ingested and something was skipped."""
    from assistant.app import actions  # lazy: loads the answering code (0.1 s)

    action = "document.supersede" if supersedes else "document.upload"
    services = open_services()
    bar = None

    def progress(stage: str, done: int, total: int, detail: str) -> None:
        # one bar of files; what the current file is doing (pages read, chunks embedded) goes after it
        nonlocal bar
        if as_json:
            return
        if bar is None:
            bar = tqdm(total=total, unit="file", desc="ingest", file=sys.stderr, dynamic_ncols=True)
        if stage == "file":
            bar.total, bar.n = total, done
        detail = printable(detail)
        bar.set_postfix_str(detail if len(detail) <= 70 else "..." + detail[-67:], refresh=False)
        bar.refresh()

    try:
        with acting(as_json):  # the app's and the API's action: fail closed, ingest, one record per file
            report = actions.add_documents(services, cli_admin(), paths, action, progress=progress,
                                           supersedes=supersedes, effective_date=effective_date, title=title,
                                           follow_symlinks=follow_symlinks)
    finally:
        if bar is not None:
            bar.close()
    data = report.to_dict()
    lines = []
    for f in report.files:  # names, titles and reasons come from files: printed with their control characters escaped
        if f.status in ("failed", "skipped"):
            lines.append(f"  {f.status.upper():<11} {printable(f.file)}: {printable(f.error or '')}")
        else:
            extra = f" (supersedes {', '.join(f.superseded)})" if f.superseded else ""
            lines.append(f"  {f.status:<11} {printable(f.file)} -> {printable(f.document_id or '')} v{f.version}, "
                         f"{plural(f.pages, 'page')}, {plural(f.chunks, 'chunk')}{extra}")
        lines.extend(f"  {'':<11} warning: {printable(w)}" for w in f.warnings)
    counts = ", ".join(f"{n} {s}" for s, n in data["counts"].items())
    lines.append(f"{plural(len(report.files), 'file')}: {counts or 'none found'}; "
                 f"{plural(report.pages_read, 'page')}, {plural(report.chunks_added, 'chunk')} added in "
                 f"{report.seconds:.1f}s")
    emit(data, as_json, "\n".join(lines))
    services.close()
    if not report.ok:
        raise typer.Exit(1)


@docs_app.command("list")
def docs_list(
    all_versions: Annotated[bool, typer.Option("--all", help="Include superseded and deleted versions.")] = False,
    as_json: JsonOpt = False,
):
    """List the documents in the library (recorded as library.list)."""
    from assistant.app import actions  # lazy: loads the answering code (0.1 s)

    services = open_services()
    with acting(as_json):
        records = actions.list_documents(services, cli_admin(), all_versions=all_versions)
    rows = [r.to_dict() for r in records]
    text = "\n".join(f"{r.document_id:<40} v{r.version} {r.status_word:<11} {r.effective_date or '-':<10} "
                     f"{r.pages:>4}p {r.chunks:>5}c  {printable(r.title)}" for r in records) or "(no documents)"
    emit(rows, as_json, text)
    services.close()


@docs_app.command("show")
def docs_show(document_id: str, as_json: JsonOpt = False):
    """Show every version of one document (recorded as library.show)."""
    from assistant.app import actions  # lazy: loads the answering code (0.1 s)

    services = open_services()
    with acting(as_json):
        versions = actions.document_versions(services, cli_admin(), document_id)
    rows = [v.to_dict() for v in versions]
    emit(rows, as_json, "\n".join(json.dumps(r, indent=2) for r in rows))
    services.close()


@docs_app.command("delete")
def docs_delete(
    document_id: str,
    version: Annotated[int | None, typer.Option(min=1, help="Delete only this version.")] = None,
    as_json: JsonOpt = False,
):
    """Delete a document (kept in the catalog as deleted for the audit trail; removed from search)."""
    from assistant.app import actions  # lazy: loads the answering code (0.1 s)

    services = open_services()
    try:
        with acting(as_json):
            keys = actions.delete_document(services, cli_admin(), document_id, version)
    except KeyError:  # recorded as a failed document.delete
        fail(f"no live document with id '{document_id}'" + (f" version {version}" if version is not None else ""), as_json)
    emit({"deleted": keys}, as_json, f"deleted {', '.join(keys)}")
    services.close()


@docs_app.command("check")
def docs_check(as_json: JsonOpt = False):
    """Check that catalog, Chroma and BM25 agree (after recovering any interrupted ingest)."""
    lib = open_library()
    result = lib.check_consistency()
    emit(result, as_json, "consistent" if result["ok"] else json.dumps(result, indent=2))
    lib.close()
    if not result["ok"]:
        raise typer.Exit(1)


@app.command()
def ask(
    question: Annotated[str, typer.Argument(help="The question to answer from the loaded documents.")],
    adapter: Annotated[str | None, typer.Option(help="LoRA adapter: a folder, a registered name, or 'none'.")] = None,
    document: Annotated[list[str] | None, typer.Option("--document", "-d", help="Limit to these document ids.")] = None,
    as_of: Annotated[str | None, typer.Option(help="Answer from the versions in force on this date.")] = None,
    k: Annotated[int | None, typer.Option(min=1, help="Number of sources to retrieve.")] = None,
    strict: Annotated[bool | None, typer.Option(
        "--strict/--no-strict", help="Answer only when both retrievers rank the cited source first (default: the "
                                     "consensus_citations setting).")] = None,
    as_json: JsonOpt = False,
):
    """Answer a question with verified citations (streams the answer as it is written)."""
    from assistant.app import actions  # lazy: loads the answering code (0.1 s)

    services = open_services(adapter)
    answer = None
    drafting = False
    try:
        # the app's and the API's action: fail closed, answer, record; a request that cannot be answered as asked
        # (empty question, bad date, unknown document, empty library) or an unusable adapter is one error
        with acting(as_json):
            for item in actions.answer_stream(services, cli_admin(), question, documents=document or None,
                                              as_of=as_of, strict=strict, k=k):
                if isinstance(item, Answer):
                    answer = item
                elif isinstance(item, str) and not as_json:
                    if not drafting:  # the draft goes to stderr; the checked answer follows on stdout
                        typer.echo("draft, not yet checked against the sources: ", nl=False, err=True)
                        drafting = True
                    typer.echo(item, nl=False, err=True)
    except FileNotFoundError as e:  # a model or adapter file that is not there
        fail(str(e), as_json)
    if drafting:
        typer.echo("", err=True)
    if as_json:
        emit(answer.to_record(), True)
    else:
        typer.echo(format_answer(answer))


def format_answer(answer) -> str:
    """A readable answer: text, flagged sentences, then sources."""
    lines = []
    if answer.in_force:
        lines.append(f"(searched the versions in force {describe(answer.in_force)}, as the question asks: "
                     f"\"{answer.in_force['words']}\")")
    if answer.abstained:
        lines.append(answer.answer)
        if answer.abstain_reason not in (None, "model"):  # why the assistant withheld or did not ask the model
            lines.append(f"(reason: {answer.abstain_reason}; the model's text is in --json raw_answer)"
                         if answer.raw_answer else f"(reason: {answer.abstain_reason})")
        lines.extend(f"(the check found that {s.issue})" for s in answer.sentences if s.issue)
        if answer.sources:
            lines.append("\nNearest sources:")
            lines.extend(f"  [{c.n}] {c.title}, {_place(c.page, c.page_label, c.clause)}" for c in answer.sources)
        return "\n".join(lines)
    for s in answer.sentences:
        flag = "" if s.supported else "  <-- not supported by the cited sources" + (f": {s.issue}" if s.issue else "")
        extra = " (citation attached by the verifier)" if s.attached else ""
        if s.corrected:
            extra += f" (the model cited {', '.join(f'[{n}]' for n in s.corrected)}; the sentence is in this source)"
        lines.append(f"{s.text}{extra}{flag}")
    lines.append("\nSources:")
    for c in answer.citations:
        lines.append(f"  [{c.n}] {c.title} ({c.file}), {_place(c.page, c.page_label, c.clause)}")
        lines.append(f"      \"{c.quote}\"")
    return "\n".join(lines)


def _place(page: int | None, label: str | None, clause: str | None) -> str:
    """Where a source is: its printed page label (or page number) and its clause when one was recognised."""
    where = f"page {label or page}" if page is not None else "no page"
    return f"{where}, clause {clause}" if clause else where


if __name__ == "__main__":  # pragma: no cover
    app()
