"""The browser app (Gradio): Ask, Documents, Evaluation, Adapters and Administration tabs behind a login.

Every handler resolves the logged-in user and checks the permission on the server (`Services.authorize`); tabs and
buttons a role may not use are also hidden, but hiding is only a convenience. `launch` is what `comply serve` runs.
"""

import logging
import sys
import threading

import gradio as gr
from starlette.middleware import Middleware

from assistant.app.api.main import ApiRoutes
from assistant.app.ui.admin import AdaptersTab, AdminTab
from assistant.app.ui.chat import CITE_JS, ChatTab, document_choices
from assistant.app.ui.documents import DocumentsTab
from assistant.app.ui.evaluation import EvalTab
from assistant.app.ui.login import LOGIN_HELP, LoginRoutes
from assistant.app.ui.retrievers import RetrieversSection
from assistant.app.ui.services import Services
from assistant.app.ui.state import Heartbeats, HeartbeatWatch, StateSweeper
from assistant.app.ui.uploads import UploadGuard
from assistant.app.users import FIRST_ADMIN, allowed
from ingest.settings import Settings, configure_offline_environment

TITLE = "comply: answers from your policies, with checked citations"
# System fonts only: the default theme fonts would be fetched from the internet.
THEME = gr.themes.Soft(primary_hue="blue", neutral_hue="slate", font=["ui-sans-serif", "system-ui", "sans-serif"],
                       font_mono=["ui-monospace", "monospace"])
CSS = """
.source-card { border: 1px solid var(--border-color-primary); border-radius: 6px; padding: 8px 10px;
               margin-bottom: 8px; }
.source-where { font-size: 0.85em; color: var(--body-text-color-subdued); }
.source-card blockquote { margin: 6px 0 0 0; padding-left: 8px; border-left: 3px solid #e0b000; }
.verdict.ok { color: #1a7f37; } .verdict.warn, .verdict.abstained { color: #9a6700; font-weight: 600; }
ul.unsupported li { color: #9a6700; }
mark.cited-span { background: #ffe066; }
.source-text, .source-context { white-space: normal; line-height: 1.5; }
.source-context { color: var(--body-text-color-subdued); margin: 6px 0; }
a.cite { font-weight: 600; text-decoration: none; padding: 0 2px; border-radius: 3px; }
a.cite:hover, a.cite:focus-visible { background: #ffe066; outline: 2px solid #1d4ed8; }
#source-view { scroll-margin-top: 8px; }
"""


def build_app(services: Services) -> gr.Blocks:
    """The Blocks app over shared services (one Library and Assistant for every user of this process)."""
    chat, documents = ChatTab(services), DocumentsTab(services)
    evaluation, adapters, admin = EvalTab(services), AdaptersTab(services), AdminTab(services)
    retrieval_models = RetrieversSection(services)
    with gr.Blocks(title="comply") as demo:
        with gr.Row():
            gr.Markdown(f"## {TITLE}")
            banner = gr.Markdown(elem_id="who")
            gr.Button("Log out", link="/logout", size="sm", scale=0)
        with gr.Tab("Ask", id="ask"):
            chat.build()
        with gr.Tab("Documents", id="documents"):
            documents.build()
        with gr.Tab("Evaluation", id="evaluation", visible=False) as eval_tab:
            evaluation.build()
        with gr.Tab("Adapters", id="adapters", visible=False) as adapters_tab:
            adapters.build()
            retrieval_models.build()
        with gr.Tab("Administration", id="admin", visible=False) as admin_tab:
            admin.build()

        def on_load(request: gr.Request) -> tuple:
            """Fill the page for the logged-in user and show only what their role may use."""
            user = services.authorize(request, "chat")
            is_admin = allowed(user.role, "users")
            keep = gr.update()
            who = f"Logged in as **{user.name}** ({user.role})"
            head = (who, gr.update(choices=document_choices(services)), chat.on_load(request),
                    *(gr.update(visible=is_admin) for _ in range(3)))
            return (*head, *documents.on_load(request),
                    *(evaluation.on_load(request) if is_admin else (keep,) * 3),
                    *(adapters.on_load(request) if is_admin else (keep,) * 3),
                    *(retrieval_models.on_load(request) if is_admin else (keep,) * 3),
                    *(admin.on_load(request) if is_admin else (keep,) * 4))

        demo.load(on_load, None, [
            banner, chat.documents, chat.conversation_list, eval_tab, adapters_tab, admin_tab,
            documents.table, documents.write_area, documents.supersede_doc, documents.delete_doc,
            evaluation.past, evaluation.run_a, evaluation.run_b,
            adapters.summary, adapters.table, adapters.name,
            retrieval_models.summary, retrieval_models.table, retrieval_models.name,
            admin.users, admin.pick_user, admin.monitor_plot, admin.monitor_table,
        ], api_name=False)

        def refresh_filter(request: gr.Request):
            """The chat's document filter after the library changed."""
            services.authorize(request, "chat")
            return gr.update(choices=document_choices(services))

        for event in documents.changes:
            event.then(refresh_filter, None, [chat.documents], api_name=False)
    return demo


def launch(settings: Settings, host: str | None = None, port: int | None = None, *, block: bool = True,
           services: Services | None = None) -> gr.Blocks:
    """Serve the app: create the first admin if there is no user, print the URL and how to log in, and serve
    until stopped (or return at once with `block=False`, e.g. in tests)."""
    configure_offline_environment()
    log_refusals()
    services = services or Services(settings)
    first_start = not services.users.list()
    generated = create_first_admin(services) if first_start else None
    demo = build_app(services)
    demo.queue(default_concurrency_limit=4)
    host, port = host or settings.host, port or settings.port
    # transformers resolves its classes lazily, and two threads doing that at once (the warm-up and a first question)
    # have seen "cannot import name 'AutoTokenizer'": resolve them here, before any second thread exists
    from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: F401

    threading.Thread(target=_warm_up, args=(services,), daemon=True, name="comply-warm-up").start()
    print(f"comply is serving on http://{host}:{port}", flush=True)
    if generated:
        print(f"First admin created. Log in as 'admin' with password: {generated}\n"
              "(shown once; add users with `comply users add NAME --role viewer|editor|admin`)", flush=True)
    elif first_start:
        print("First admin created: log in as 'admin' with the password set in COMPLY_ADMIN_PASSWORD.", flush=True)
    else:
        print("Log in with your comply user name and password "
              "(add users with `comply users add NAME --role viewer|editor|admin`).", flush=True)
    heartbeats = Heartbeats()
    demo.launch(server_name=host, server_port=port, auth=services.authenticate,
                auth_message="comply — log in with the user name and password your administrator gave you. "
                + LOGIN_HELP.format(n=settings.login_max_failures),
                prevent_thread_lock=True, quiet=True, show_error=False, footer_links=[],
                enable_monitoring=False, ssr_mode=False, run_history=False, mcp_server=False,
                max_file_size=f"{int(settings.max_file_mb)}mb", theme=THEME, css=CSS, js=CITE_JS,
                app_kwargs={"middleware": [Middleware(UploadGuard, services=services),
                                           Middleware(HeartbeatWatch, watcher=heartbeats)]})
    # Gradio builds its app inside launch(): comply's login, logout and session checks go in front right after,
    # before anyone can have logged in (a login in between would only be refused later).
    routes = LoginRoutes(demo.server_app, services.logins, services.sessions, settings)
    routes.install()
    services.session_token = routes.token
    ApiRoutes(demo.server_app, services).install()  # the REST API (docs/api.md) on the same server
    # Gradio keeps every session's state until 10,000 sessions exist: drop what no tab and no event uses any more
    demo.comply_state_sweeper = StateSweeper(demo, heartbeats,
                                             keep_closed_s=settings.ui_state_keep_minutes * 60).start()
    if block:
        demo.block_thread()
    return demo


class _StderrHandler(logging.StreamHandler):
    """A StreamHandler to whatever sys.stderr is when a line is written, not the stream it was at start-up (which a
    host such as a test runner may have replaced and closed since)."""

    def __init__(self):
        super().__init__(sys.stderr)

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:
        pass  # always the current sys.stderr


def log_refusals() -> None:
    """Print the app's log lines (a refused or invalid request: one line each, in place of the traceback Gradio would
    print for an error) to stderr, once per process."""
    app_log = logging.getLogger("assistant.app")
    if not any(h.get_name() == "comply" for h in app_log.handlers):
        handler = _StderrHandler()
        handler.set_name("comply")
        handler.setFormatter(logging.Formatter("%(asctime)s comply %(levelname)s: %(message)s"))
        app_log.addHandler(handler)
        app_log.setLevel(logging.INFO)


def create_first_admin(services: Services) -> str | None:
    """Create 'admin' in a home without users, only if the audit trail can record it (an AuditUnavailable in words
    otherwise, and no user is made); return the password if it was generated."""
    with services.audit.recorded("app", "user.add", name=FIRST_ADMIN, role="admin", first_admin=True):
        return services.users.ensure_admin(services.settings.admin_password)


def _warm_up(services: Services) -> None:
    """Load the embedding models (the index's, and the configured one the checks score with) and the generator
    before the first question arrives."""
    with services.lock.shared():
        services.library.embedder.encode(["warm up"])
        services.library.base_embedder().encode(["warm up"])
        _ = services.assistant.generator
