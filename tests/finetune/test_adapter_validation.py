"""Damaged adapter folders, built from copies of the shipped adapter: register refuses them and copies nothing,
activate refuses one damaged after it was registered and keeps the active adapter, list shows them without
crashing, and the `comply adapters` commands print each refusal once as an error. No model is loaded."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from assistant.app.cli.main import app
from finetune import adapters
from ingest.settings import Settings


@pytest.fixture(scope="module")
def shipped() -> Path:
    """The adapter shipped in data/adapters/ (sound: a real peft folder with its card)."""
    return next(p for p in sorted(adapters.SHIPPED_DIR.iterdir()) if adapters.is_adapter(p))


def _edit_json(path: Path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def _snapshot(root: Path) -> dict[str, bytes]:
    """Every file under the registry with its content."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


DAMAGE = {
    "card not JSON": (lambda d: (d / "card.json").write_text('{"name": oops'), "card.json cannot be read as JSON"),
    "card a list": (lambda d: (d / "card.json").write_text("[1, 2]"), "card.json is not a JSON object"),
    "card eval a string": (lambda d: _edit_json(d / "card.json", lambda c: c.update(eval="good")),
                           "'eval' in card.json is not an object"),
    "config not JSON": (lambda d: (d / "adapter_config.json").write_text("{peft"),
                        "adapter_config.json cannot be read as JSON"),
    "config without peft_type": (lambda d: _edit_json(d / "adapter_config.json", lambda c: c.pop("peft_type")),
                                 "adapter_config.json has no peft_type"),
    "config without r": (lambda d: _edit_json(d / "adapter_config.json", lambda c: c.pop("r")),
                         "adapter_config.json has no LoRA rank r"),
    "weights truncated": (lambda d: os.truncate(d / "adapter_model.safetensors", 1000),
                          "adapter_model.safetensors is damaged or truncated"),
    "weights cut short at the end": (lambda d: os.truncate(d / "adapter_model.safetensors",
                                                           (d / "adapter_model.safetensors").stat().st_size - 100),
                                     "adapter_model.safetensors is damaged or truncated"),
    "weights missing": (lambda d: (d / "adapter_model.safetensors").unlink(), "no adapter_model.safetensors"),
}


@pytest.mark.parametrize("kind", DAMAGE)
def test_register_refuses_a_damaged_folder_and_copies_nothing(tmp_path, shipped, kind):
    damage, reason = DAMAGE[kind]
    s = Settings(home=tmp_path / "home")
    adapters.register(s, shipped, "sound")
    adapters.activate(s, "sound", force=True)
    before = _snapshot(s.adapters_dir)
    broken = shutil.copytree(shipped, tmp_path / "broken")
    damage(broken)

    with pytest.raises(adapters.AdapterError) as refused:
        adapters.register(s, broken)
    assert str(broken) in str(refused.value) and reason in str(refused.value)
    assert _snapshot(s.adapters_dir) == before  # nothing copied, nothing activated
    with pytest.raises(adapters.AdapterError, match=reason):
        adapters.register(s, broken, "moved", move=True)
    assert broken.is_dir() and _snapshot(s.adapters_dir) == before


def test_activate_refuses_an_adapter_damaged_after_it_was_registered(tmp_path, shipped):
    s = Settings(home=tmp_path)
    adapters.register(s, shipped, "first")
    adapters.register(s, shipped, "second")
    adapters.activate(s, "first", force=True)
    history = adapters.history(s)
    os.truncate(s.adapters_dir / "second" / "adapter_model.safetensors", 1000)

    for force in (False, True):  # --force skips the release gate, not the check
        with pytest.raises(adapters.AdapterError, match="second: adapter_model.safetensors is damaged"):
            adapters.activate(s, "second", force=force)
    assert adapters.active(s) == "first" and adapters.history(s) == history

    # the same once it is active: rolling back to it is refused too
    shutil.copy(shipped / "adapter_model.safetensors", s.adapters_dir / "second" / "adapter_model.safetensors")
    adapters.activate(s, "second", force=True)
    (s.adapters_dir / "first" / "card.json").write_text("not json")
    with pytest.raises(adapters.AdapterError, match="first: card.json cannot be read as JSON"):
        adapters.rollback(s)
    assert adapters.active(s) == "second"


def test_a_damaged_active_adapter_can_be_replaced(tmp_path, shipped):
    s = Settings(home=tmp_path)
    adapters.register(s, shipped, "old")
    adapters.register(s, shipped, "new")
    adapters.activate(s, "old", force=True)
    (s.adapters_dir / "old" / "card.json").write_text("{")
    assert adapters.activate(s, "new")["active"] == "new"  # its unreadable precision does not hold the gate


def test_list_shows_a_damaged_card_with_empty_fields_and_the_reason(tmp_path, shipped):
    s = Settings(home=tmp_path)
    adapters.register(s, shipped, "broken")
    adapters.register(s, shipped, "sound")
    adapters.register(s, shipped, "truncated")
    (s.adapters_dir / "broken" / "card.json").write_text('{"name": oops')
    os.truncate(s.adapters_dir / "truncated" / "adapter_model.safetensors", 1000)

    broken, sound, truncated = adapters.list_adapters(s)
    assert (broken.name, broken.base_model, broken.dataset, broken.citation_precision, broken.created) == (
        "broken", None, None, None, None)
    assert "card.json cannot be read as JSON" in broken.error
    assert sound.error is None and sound.base_model == adapters.read_card(shipped)["base_model"]
    assert truncated.base_model == sound.base_model  # its card is fine: only the weights are damaged
    assert "adapter_model.safetensors is damaged" in truncated.error


def test_cli_prints_refusals_as_errors_and_list_stays_json(tmp_path, shipped):
    home = tmp_path / "home"
    broken = shutil.copytree(shipped, tmp_path / "brokencard")
    (broken / "card.json").write_text('{"name": oops')
    runner = CliRunner()

    def run(*args):
        return runner.invoke(app, ["--home", str(home), "adapters", *args])

    refused = run("register", str(broken))
    assert refused.exit_code == 1 and refused.stderr.startswith("error: ") and "card.json" in refused.stderr
    assert "Traceback" not in refused.output
    refused = run("register", str(broken), "--json")
    assert refused.exit_code == 1 and "card.json cannot be read as JSON" in json.loads(refused.stdout)["error"]
    assert not (home / "adapters" / "brokencard").exists()

    assert run("register", str(shipped), "--name", "tuned").exit_code == 0
    (home / "adapters" / "tuned" / "card.json").write_text("[")
    listed = run("list", "--json")
    assert listed.exit_code == 0
    [row] = json.loads(listed.stdout)
    assert row["name"] == "tuned" and row["base_model"] is None and "card.json" in row["error"]
    assert "DAMAGED" in run("list").stdout
    refused = run("activate", "tuned", "--force", "--json")
    assert refused.exit_code == 1 and "card.json" in json.loads(refused.stdout)["error"]
