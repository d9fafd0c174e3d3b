"""XTTS-v2 model files with random weights, so coqui-tts's real loading and inference code runs offline.

XTTS weights are not on PyPI (see docs/xtts.md). What is written here has the exact file formats of a
downloaded XTTS-v2: `model.pth` (a checkpoint `Xtts.load_checkpoint` reads), `config.json` (an XttsConfig),
`vocab.json` (a `tokenizers` BPE file that the real `VoiceBpeTokenizer` loads) and `speakers_xtts.pth`
(speaker name -> {"gpt_cond_latent", "speaker_embedding"}).

- "tiny": a 2-layer, 64-wide GPT, so tests run in seconds. XttsConfig has no knobs for the HiFiGAN decoder's
  width (Xtts builds it with fixed channels), so the decoder is full-size in both sizes: ~100 MB per checkpoint.
- "full": the architecture of the real XTTS-v2 config.json (GPT 30 layers x 1024, 16 heads, perceiver
  resampler, 6681 text tokens, 1026 audio tokens), for benchmarks: ~1.8 GB, written outside the repo.

A random GPT would emit its stop token at random; the fixture turns that token off (a large negative bias),
so every sentence runs to the model's maximum length (`gpt_max_audio_tokens`) and tests are reproducible.

    python -m harness.xtts --size full DIR    # writes the files into DIR and prints their paths
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

FIXTURE_VERSION = 1  # bump when the way files are generated changes (it is part of the cache key)
SEED = 1234
SPEAKERS = ("neutral_speaker", "warm_speaker", "excited_speaker")
REPO_CACHE = Path(__file__).resolve().parents[1] / "tests" / ".cache" / "xtts"

# Text tokens: XTTS puts "[en]" before the text and writes spaces as "[SPACE]"; "[START]"/"[STOP]" frame it.
SPECIAL_TOKENS = ["[STOP]", "[UNK]", "[SPACE]", "[START]", "[en]"]
CHARACTERS = list("abcdefghijklmnopqrstuvwxyz0123456789.,!?'\"-:;()")
FULL_TEXT_TOKENS = 6681  # the real XTTS-v2 vocabulary size (gpt_number_text_tokens)

_COMMON_ARGS = {
    "gpt_num_audio_tokens": 1026,
    "gpt_start_audio_token": 1024,
    "gpt_stop_audio_token": 1025,
    "gpt_code_stride_len": 1024,
    "gpt_use_perceiver_resampler": True,
    "gpt_max_prompt_tokens": 70,
    "input_sample_rate": 22050,
    "output_sample_rate": 24000,
    "output_hop_length": 256,
    "d_vector_dim": 512,
    "cond_d_vector_in_each_upsampling_layer": True,
}
MODEL_ARGS = {
    "tiny": {
        **_COMMON_ARGS,
        "gpt_layers": 2,
        "gpt_n_model_channels": 64,
        "gpt_n_heads": 4,
        "gpt_max_text_tokens": 200,
        # 24 generated tokens (the maximum less 3) = 24 * 1024 samples at 22050 Hz: about 1.1 s of audio.
        # Short on purpose: the full-size HiFiGAN decoder is what costs time on a CPU.
        "gpt_max_audio_tokens": 27,
        "decoder_input_dim": 64,
    },
    "full": {
        **_COMMON_ARGS,
        "gpt_layers": 30,
        "gpt_n_model_channels": 1024,
        "gpt_n_heads": 16,
        "gpt_max_text_tokens": 402,
        "gpt_max_audio_tokens": 605,
        "decoder_input_dim": 1024,
    },
}
# The sampling settings of the real XTTS-v2 config.json.
SAMPLING = {"temperature": 0.75, "length_penalty": 1.0, "repetition_penalty": 5.0, "top_k": 50, "top_p": 0.85}
FILES = {"checkpoint": "model.pth", "config": "config.json", "tokenizer": "vocab.json", "voices": "speakers_xtts.pth"}


def _text_vocabulary(size: str) -> list[str]:
    tokens = SPECIAL_TOKENS + CHARACTERS
    if size == "full":
        # Never produced by the tokenizer; they only give the text embedding its real XTTS-v2 size.
        tokens += [f"[unused{i}]" for i in range(FULL_TEXT_TOKENS - len(tokens))]
    return tokens


def cache_key(size: str) -> str:
    """A hash of everything that decides the generated files (so a change regenerates the cache)."""
    import torch
    import TTS

    params = {
        "version": FIXTURE_VERSION,
        "size": size,
        "model_args": MODEL_ARGS[size],
        "sampling": SAMPLING,
        "vocabulary": _text_vocabulary(size),
        "speakers": SPEAKERS,
        "seed": SEED,
        "coqui-tts": TTS.__version__,
        "torch": torch.__version__,
    }
    return hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:16]


def write_random_xtts(directory: Path, size: str = "tiny") -> dict[str, Path]:
    """Write config.json, vocab.json, model.pth (random weights, fixed seed) and speakers_xtts.pth into
    ``directory``; returns their paths by role: checkpoint, config, tokenizer, voices."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from TTS.tts.configs.xtts_config import XttsConfig
    from TTS.tts.layers.xtts.tokenizer import VoiceBpeTokenizer
    from TTS.tts.models.xtts import Xtts

    if size not in MODEL_ARGS:
        raise ValueError(f"size must be one of {sorted(MODEL_ARGS)}, not {size!r}")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = {role: directory / name for role, name in FILES.items()}

    # A character-level BPE (no merges): every character the English cleaners keep is one token.
    vocabulary = {token: index for index, token in enumerate(_text_vocabulary(size))}
    tokenizer = Tokenizer(models.BPE(vocab=vocabulary, merges=[], unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.add_special_tokens(SPECIAL_TOKENS)
    tokenizer.save(str(paths["tokenizer"]))

    config = XttsConfig()
    for key, value in MODEL_ARGS[size].items():
        setattr(config.model_args, key, value)
    for key, value in SAMPLING.items():
        setattr(config, key, value)
    config.languages = ["en"]
    config.save_json(str(paths["config"]))

    state = torch.random.get_rng_state()
    try:
        torch.manual_seed(SEED)
        model = Xtts(config)
        model.tokenizer = VoiceBpeTokenizer(vocab_file=paths["tokenizer"])  # real tokenizer: sizes the text tables
        model.init_models()
        with torch.no_grad():
            model.gpt.mel_head.bias[config.model_args.gpt_stop_audio_token] = -1e4
        torch.save({"model": model.state_dict()}, paths["checkpoint"])

        generator = torch.Generator().manual_seed(SEED)
        width = config.model_args.gpt_n_model_channels
        voices = {}
        for name in SPEAKERS:
            embedding = torch.randn(1, config.model_args.d_vector_dim, 1, generator=generator)
            voices[name] = {
                # 32 latents: the perceiver resampler's output length, as in the real speakers_xtts.pth.
                "gpt_cond_latent": torch.randn(1, 32, width, generator=generator),
                "speaker_embedding": embedding / embedding.norm(),
            }
        torch.save(voices, paths["voices"])
    finally:
        torch.random.set_rng_state(state)
    return paths


def cached_random_xtts(size: str = "tiny", cache_dir: Path | None = None) -> dict[str, Path]:
    """write_random_xtts into a cache, once per cache key. "tiny" caches under tests/.cache/xtts (git-ignored);
    "full" (~1.8 GB) under $XDG_CACHE_HOME/voi-xtts (default ~/.cache/voi-xtts), never in the repo."""
    if cache_dir is None:
        user_cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "voi-xtts"
        cache_dir = REPO_CACHE if size == "tiny" else user_cache
    target = Path(cache_dir) / f"{size}-{cache_key(size)}"
    if not all((target / name).is_file() for name in FILES.values()):
        target.parent.mkdir(parents=True, exist_ok=True)
        # Written aside, then renamed: a concurrent or interrupted run never sees half a model.
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
        try:
            write_random_xtts(staging, size)
            try:
                staging.rename(target)
            except OSError:  # another process finished first (or a stale, incomplete copy is in the way)
                if not all((target / name).is_file() for name in FILES.values()):
                    shutil.rmtree(target, ignore_errors=True)
                    staging.rename(target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        for stale in target.parent.glob(f"{size}-*"):  # earlier versions of the generator
            if stale != target and len(stale.name) == len(target.name):
                shutil.rmtree(stale, ignore_errors=True)
    return {role: target / name for role, name in FILES.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("directory", type=Path)
    parser.add_argument("--size", choices=sorted(MODEL_ARGS), default="tiny")
    args = parser.parse_args()
    for role, path in write_random_xtts(args.directory, args.size).items():
        print(f"{role}: {path}")


if __name__ == "__main__":
    main()
