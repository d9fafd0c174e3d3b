"""Reading a CTranslate2 Whisper model (``model.bin``) and mapping it to openai-whisper's state dict.

model.bin (binary version 6) is: uint32 version, string spec name, uint32 revision, uint32 variable count,
then per variable: string name, uint8 rank, uint32 dims, uint8 dtype id, uint32 byte count, raw bytes;
then uint32 alias count and (alias, target) string pairs. Strings are uint16 length (with the NUL) + UTF-8
+ NUL. Everything is little-endian.
"""

from __future__ import annotations

import base64
import gzip
import json
import struct
from pathlib import Path
from typing import BinaryIO

import numpy as np

_DTYPES = ("float32", "int8", "int16", "int32", "float16", "bfloat16")


def _string(f: BinaryIO) -> str:
    (length,) = struct.unpack("<H", f.read(2))
    return f.read(length)[:-1].decode("utf-8")


def read_ct2_model(path: str | Path) -> dict[str, np.ndarray]:
    """All variables of a CTranslate2 model.bin as float32 (or integer scalars), aliases resolved."""
    variables: dict[str, np.ndarray] = {}
    with open(path, "rb") as f:
        (version,) = struct.unpack("<I", f.read(4))
        if version < 5:
            raise ValueError(f"{path}: CTranslate2 binary version {version} is too old (need 5 or newer)")
        spec = _string(f)
        if spec != "WhisperSpec":
            raise ValueError(f"{path}: a {spec}, not a Whisper model")
        f.read(4)  # revision
        (count,) = struct.unpack("<I", f.read(4))
        for _ in range(count):
            name = _string(f)
            (rank,) = struct.unpack("<B", f.read(1))
            shape = struct.unpack(f"<{rank}I", f.read(4 * rank))
            (dtype_id,) = struct.unpack("<B", f.read(1))
            (nbytes,) = struct.unpack("<I", f.read(4))
            raw = f.read(nbytes)
            dtype = _DTYPES[dtype_id]
            if dtype == "bfloat16":
                data = (np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16).view(np.float32)
            else:
                data = np.frombuffer(raw, dtype=np.dtype(dtype).newbyteorder("<"))
            variables[name] = data.reshape(shape)
        (aliases,) = struct.unpack("<I", f.read(4))
        for _ in range(aliases):
            alias, target = _string(f), _string(f)
            variables[alias] = variables[target]
    for name, value in list(variables.items()):  # int8-quantized weights carry a per-row scale
        if value.dtype == np.int8 and value.ndim >= 1 and f"{name}_scale" in variables:
            scale = variables.pop(f"{name}_scale").astype(np.float32)
            variables[name] = value.astype(np.float32) / scale.reshape(-1, *([1] * (value.ndim - 1)))
    return variables


def _float(value: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(value.astype(np.float32))


def _layers(variables: dict[str, np.ndarray], prefix: str) -> int:
    return len({k.split("/")[1] for k in variables if k.startswith(prefix + "/layer_") and k.split("/")[1] != "layer_norm"})


def to_openai_state_dict(v: dict[str, np.ndarray]) -> tuple[dict[str, int], dict[str, np.ndarray]]:
    """openai-whisper's ``dims`` and ``model_state_dict`` (as numpy arrays) for CTranslate2 Whisper variables."""
    state: dict[str, np.ndarray] = {}

    def norm(src: str, dst: str) -> None:
        state[f"{dst}.weight"] = _float(v[f"{src}/gamma"])
        state[f"{dst}.bias"] = _float(v[f"{src}/beta"])

    def linear(src: str, dst: str, bias: bool = True) -> None:
        state[f"{dst}.weight"] = _float(v[f"{src}/weight"])
        if bias:
            state[f"{dst}.bias"] = _float(v[f"{src}/bias"])

    def split(src: str, dsts: list[str]) -> None:
        """CTranslate2 fuses q/k/v (or k/v) projections along the output dimension; keys have no bias."""
        weights = np.split(_float(v[f"{src}/weight"]), len(dsts))
        biases = np.split(_float(v[f"{src}/bias"]), len(dsts))
        for dst, weight, bias in zip(dsts, weights, biases):
            state[f"{dst}.weight"] = weight
            if not dst.endswith(".key"):
                state[f"{dst}.bias"] = bias

    def self_attention(src: str, dst: str) -> None:
        norm(f"{src}/self_attention/layer_norm", f"{dst}.attn_ln")
        split(f"{src}/self_attention/linear_0", [f"{dst}.attn.query", f"{dst}.attn.key", f"{dst}.attn.value"])
        linear(f"{src}/self_attention/linear_1", f"{dst}.attn.out")

    def mlp(src: str, dst: str) -> None:
        norm(f"{src}/layer_norm", f"{dst}.mlp_ln")
        linear(f"{src}/linear_0", f"{dst}.mlp.0")
        linear(f"{src}/linear_1", f"{dst}.mlp.2")

    for name in ("conv1", "conv2"):
        linear(f"encoder/{name}", f"encoder.{name}")
    state["encoder.positional_embedding"] = _float(v["encoder/position_encodings/encodings"])
    audio_layers = _layers(v, "encoder")
    for i in range(audio_layers):
        src, dst = f"encoder/layer_{i}", f"encoder.blocks.{i}"
        self_attention(src, dst)
        mlp(f"{src}/ffn", dst)
    norm("encoder/layer_norm", "encoder.ln_post")

    state["decoder.token_embedding.weight"] = _float(v["decoder/embeddings/weight"])
    state["decoder.positional_embedding"] = _float(v["decoder/position_encodings/encodings"])
    text_layers = _layers(v, "decoder")
    for i in range(text_layers):
        src, dst = f"decoder/layer_{i}", f"decoder.blocks.{i}"
        self_attention(src, dst)
        norm(f"{src}/attention/layer_norm", f"{dst}.cross_attn_ln")
        linear(f"{src}/attention/linear_0", f"{dst}.cross_attn.query")
        split(f"{src}/attention/linear_1", [f"{dst}.cross_attn.key", f"{dst}.cross_attn.value"])
        linear(f"{src}/attention/linear_2", f"{dst}.cross_attn.out")
        mlp(f"{src}/ffn", dst)
    norm("decoder/layer_norm", "decoder.ln")

    n_audio_state = state["encoder.conv1.weight"].shape[0]
    dims = {
        "n_mels": int(state["encoder.conv1.weight"].shape[1]),
        "n_audio_ctx": int(state["encoder.positional_embedding"].shape[0]),
        "n_audio_state": int(n_audio_state),
        "n_audio_head": int(v["encoder/num_heads"]),
        "n_audio_layer": audio_layers,
        "n_vocab": int(state["decoder.token_embedding.weight"].shape[0]),
        "n_text_ctx": int(state["decoder.positional_embedding"].shape[0]),
        "n_text_state": int(state["decoder.token_embedding.weight"].shape[1]),
        "n_text_head": int(v["decoder/num_heads"]),
        "n_text_layer": text_layers,
    }
    return dims, state


def alignment_heads_dump(config_path: Path, dims: dict[str, int]) -> bytes | None:
    """The alignment heads of config.json in openai-whisper's format (gzip + base85 of a boolean mask)."""
    if not config_path.is_file():
        return None
    heads = json.loads(config_path.read_text()).get("alignment_heads")
    if not heads:
        return None
    mask = np.zeros((dims["n_text_layer"], dims["n_text_head"]), dtype=bool)
    for layer, head in heads:
        mask[layer, head] = True
    return base64.b85encode(gzip.compress(mask.tobytes()))


def write_openai_checkpoint(model_dir: Path, output: Path) -> dict[str, int]:
    """Convert ``model_dir`` (a CTranslate2 Whisper model) to an openai-whisper checkpoint file (needs torch)."""
    import torch

    dims, state = to_openai_state_dict(read_ct2_model(model_dir / "model.bin"))
    checkpoint: dict = {"dims": dims, "model_state_dict": {k: torch.from_numpy(v) for k, v in state.items()}}
    heads = alignment_heads_dump(model_dir / "config.json", dims)
    if heads is not None:
        checkpoint["alignment_heads"] = heads
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_suffix(".partial")
    torch.save(checkpoint, partial)
    partial.rename(output)
    return dims
