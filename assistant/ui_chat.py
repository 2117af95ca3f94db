"""The Ask tab: a streamed answer, then the verified answer with [n] markers, flagged sentences, source cards, and
each source opened at its page with the quoted span highlighted. Every answer goes to the audit trail."""

import html
from dataclasses import asdict

import gradio as gr

from assistant.actions import WAITING, answer_stream
from assistant.audit import AuditError
from assistant.pdf_view import SourceViewError, citation_view, describe_place
from assistant.pipeline import WITHHELD_REASONS
from assistant.types import Answer, Citation
from assistant.ui_services import Services, audit_shown, parse_date

STREAM_CURSOR = " ▍"
# The streamed text is the model's draft: it is shown as such until the checked answer replaces it.
DRAFT_LABEL = "_Draft, not yet checked against the sources:_\n\n"
UNSUPPORTED_NOTE = "not supported by the cited sources"


# What the chat says under an abstention whose cause is not simply "the documents do not say".
ABSTAIN_REASONS = {
    "no_consensus": "Strict citations: an answer was written, but the two retrievers (meaning and keywords) do not "
                    "both rank its cited passage first, so it is not shown. Untick \"Strict citations\" to see it.",
    "low_confidence": "An answer was written, but the model's confidence in it is below the minimum (the "
                      "min_confidence setting, or the threshold calibrated for the adapter), so it is not shown.",
    "low_citation_score": "An answer was written, but the passage it cites is not clearly the best match for the "
                          "question (the retrievers rank it too low or too close to the others), so it is not shown "
                          "(the adapter's calibrated citation gate, or the min_citation_score setting).",
    "unsupported": "An answer was written, but none of its sentences is supported by the passage it cites.",
}


def answer_markdown(answer: Answer) -> str:
    """The answer as the chat shows it: sentences with [n] markers; unsupported ones flagged in words."""
    if answer.abstained:
        nearest = " The nearest passages are listed under Sources." if answer.sources else ""
        why = ABSTAIN_REASONS.get(answer.abstain_reason or "")
        found = "".join(f" The check found that {s.issue}." for s in answer.sentences if s.issue)
        return f"{answer.answer}{nearest}" + (f"\n\n*{why}{found}*" if why else "")
    parts = []
    for s in answer.sentences:
        text = s.text + ("".join(f" [{n}]" for n in s.attached) if s.attached else "")
        note = UNSUPPORTED_NOTE + (f": {s.issue}" if s.issue else "")
        parts.append(text if s.supported else f"⚠ *{text}* **({note})**")
    return " ".join(parts)


def where(c: Citation) -> str:
    """'page 4 (printed page iv), clause 3.1.(c)' for a citation."""
    return describe_place(c.page, c.page_label, c.clause)


def sources_html(answer: Answer) -> str:
    """Source cards (title, file, page, clause, quote, score) and the verification summary, HTML-escaped."""
    esc = html.escape
    cards = answer.sources if answer.abstained else answer.citations
    if answer.abstained and answer.abstain_reason in WITHHELD_REASONS:
        head = "<p class='verdict abstained'>Withheld: the drafted answer did not pass the checks. Nearest passages:</p>"
    elif answer.abstained:
        head = ("<p class='verdict abstained'>Not answered: the loaded documents do not answer this question. "
                "Nearest passages:</p>")
    else:
        head = _verification(answer)
    items = []
    for c in cards:
        items.append(
            f"<div class='source-card' data-n='{c.n}'>"
            f"<div class='source-head'><span class='source-n'>[{c.n}]</span> <b>{esc(c.title)}</b></div>"
            f"<div class='source-where'>{esc(c.file)} · {esc(where(c))} · v{c.version} · "
            f"retrieval score {c.score:.4f}</div>"
            f"<blockquote>{esc(c.quote)}</blockquote></div>")
    if not items:
        items.append("<p>No passage in the library is close to this question.</p>")
    return f"<div class='sources'>{head}{''.join(items)}</div>"


def _verification(answer: Answer) -> str:
    total = len(answer.sentences)
    bad = [s for s in answer.sentences if not s.supported]
    if not bad:
        return f"<p class='verdict ok'>All {total} sentence(s) are supported by the cited sources.</p>"
    listed = "".join(f"<li>{html.escape(s.text)}" + (f" <i>({html.escape(s.issue)})</i>" if s.issue else "")
                     + "</li>" for s in bad)
    return (f"<p class='verdict warn'>{len(bad)} of {total} sentence(s) are {UNSUPPORTED_NOTE}; do not rely on "
            f"them:</p><ul class='unsupported'>{listed}</ul>")


def source_choices(answer: Answer) -> list[tuple[str, str]]:
    """Radio choices (label, n) for the sources that can be opened."""
    cards = answer.sources if answer.abstained else answer.citations
    return [(f"[{c.n}] {c.title}, {where(c)}", str(c.n)) for c in cards]


def document_choices(services: Services) -> list[tuple[str, str]]:
    """(title, document id) of every document in force, for the document filter."""
    records = services.library.catalog.documents(status="active")
    return [(f"{r.title} (v{r.version})", r.document_id) for r in records]


class ChatTab:
    """Builds the Ask tab and holds its handlers."""

    def __init__(self, services: Services):
        self.services = services

    def build(self) -> None:
        """Create the components and wire the events (inside a gr.Tab)."""
        with gr.Row():
            with gr.Column(scale=3):
                self.chat = gr.Chatbot(label="Conversation", height=420, elem_id="chat", buttons=["copy"],
                                       feedback_options=None, group_consecutive_messages=False)
                with gr.Row():
                    self.question = gr.Textbox(label="Your question", placeholder="e.g. How long must customer "
                                               "records be kept?", scale=5, elem_id="question", lines=1)
                    self.ask_button = gr.Button("Ask", variant="primary", scale=1, elem_id="ask")
                self.new_button = gr.Button("New conversation", size="sm")
            with gr.Column(scale=2):
                self.documents = gr.Dropdown(label="Only these documents (optional)", multiselect=True, choices=[],
                                             elem_id="doc-filter")
                self.as_of = gr.Textbox(label="Versions in force on (optional, YYYY-MM-DD)", elem_id="as-of")
                self.strict = gr.Checkbox(
                    label="Strict citations: answer only when both retrievers rank the cited source first "
                          "(fewer answers, more of them cite the right place)",
                    value=self.services.settings.consensus_citations, elem_id="strict")
                self.sources = gr.HTML("<p class='hint'>Sources for the answer appear here.</p>", elem_id="sources",
                                       label="Sources")
        with gr.Row():
            with gr.Column(scale=1):
                self.source_pick = gr.Radio(label="Open a source", choices=[], elem_id="source-pick")
                self.source_caption = gr.Markdown(elem_id="source-caption")
            with gr.Column(scale=2):
                self.page_image = gr.Image(label="Cited page (quoted passage highlighted)", type="pil",
                                           interactive=False, visible=False, elem_id="page-image",
                                           buttons=["download", "fullscreen"])
                self.page_text = gr.HTML(visible=False, elem_id="page-text")
        self.history = gr.State([])
        self.citations = gr.State([])

        outputs = [self.chat, self.history, self.sources, self.source_pick, self.citations, self.question]
        inputs = [self.question, self.chat, self.history, self.documents, self.as_of, self.strict]
        # A question asked while another is answered runs after it instead of being dropped.
        self.ask_button.click(self.ask, inputs, outputs, api_name="ask", trigger_mode="always_last")
        self.question.submit(self.ask, inputs, outputs, api_name=False, trigger_mode="always_last")
        self.source_pick.change(self.open_source, [self.source_pick, self.citations],
                                [self.source_caption, self.page_image, self.page_text], api_name="open_source")
        cleared = [self.chat, self.history, self.sources, self.source_pick, self.citations]
        self.new_button.click(self.new_conversation, None, cleared, api_name=False)
        self.chat.clear(self.new_conversation, None, cleared, api_name=False)  # the chat's own bin icon

    def ask(self, question: str, chat: list, history: list, documents: list, as_of: str, strict: bool,
            request: gr.Request):
        """Stream an answer into the chat, then show it verified with its sources; record it in the audit."""
        user = self.services.authorize(request, "chat")
        question = (question or "").strip()
        keep = gr.update()
        try:  # a warning, not an error: an error would cover every output panel with a red badge
            if not question:
                raise gr.Error("Type a question first.")
            as_of = parse_date(as_of, "as-of date")
            with audit_shown():  # fail closed: no answer, not even its draft, that cannot be recorded
                stream = answer_stream(self.services, user.name, question, documents=documents or None, as_of=as_of,
                                       strict=bool(strict), history=[tuple(pair) for pair in history or []])
        except gr.Error as e:
            gr.Warning(e.message)
            yield keep, keep, keep, keep, keep, keep
            return
        chat = list(chat or []) + [{"role": "user", "content": question},
                                   {"role": "assistant", "content": "Searching the documents…"}]
        yield chat, history, "<p class='hint'>Searching the documents…</p>", gr.update(choices=[], value=None), [], ""
        pieces: list[str] = []
        answer = None
        try:
            for item in stream:
                if isinstance(item, Answer):
                    answer = item
                    break
                if item is WAITING:
                    chat[-1]["content"] = "Waiting for a change to the library or the adapter to finish…"
                else:
                    pieces.append(item)
                    chat[-1]["content"] = DRAFT_LABEL + "".join(pieces) + STREAM_CURSOR
                yield chat, history, keep, keep, [], keep
        except ValueError as e:  # the request itself, e.g. an empty library or a document deleted meanwhile
            chat[-1]["content"] = f"⚠ {str(e)[0].upper()}{str(e)[1:]}."
            yield chat, history, "", gr.update(choices=[], value=None), [], keep
            return
        except AuditError as e:  # the checked answer is not shown: it could not be recorded
            chat[-1]["content"] = f"⚠ Not answered: the audit trail could not record this answer ({e})."
            yield chat, history, "", gr.update(choices=[], value=None), [], keep
            return
        assert answer is not None
        chat[-1]["content"] = answer_markdown(answer)
        history = list(history or []) + [[question, answer.answer]]
        cards = answer.sources if answer.abstained else answer.citations
        # The question box was emptied when this question started; what was typed since is the next question.
        yield (chat, history, sources_html(answer), gr.update(choices=source_choices(answer), value=None),
               [asdict(c) for c in cards], keep)

    def open_source(self, choice: str | None, citations: list, request: gr.Request):
        """Show the chosen source: its PDF page with the span highlighted, or the passage text with it marked."""
        self.services.authorize(request, "chat")
        hidden = gr.update(visible=False, value=None)
        if not choice:
            return "", hidden, hidden
        cited = next((Citation(**c) for c in citations or [] if str(c["n"]) == str(choice)), None)
        if cited is None:
            raise gr.Error("That source belongs to an earlier answer; ask again to open it.")
        try:
            settings = self.services.settings
            view = citation_view(self.services.library.catalog, cited,
                                 max_decompressed_page_mb=settings.max_decompressed_page_mb,
                                 max_decompressed_file_mb=settings.max_decompressed_file_mb)
        except SourceViewError as e:
            raise gr.Error(f"This source cannot be shown: {e}") from e
        caption = f"**[{cited.n}] {view.title}** — {view.where}  \n`{view.file}`, version {cited.version}"
        if not view.highlighted:
            caption += "  \n_The quoted passage could not be located on the page; the whole page is shown._"
        if view.image is not None:
            return caption, gr.update(visible=True, value=view.image), hidden
        return caption, hidden, gr.update(visible=True, value=view.html)

    def new_conversation(self, request: gr.Request):
        """Clear the conversation, so the next question starts without context."""
        self.services.authorize(request, "chat")
        return [], [], "<p class='hint'>Sources for the answer appear here.</p>", gr.update(choices=[], value=None), []
