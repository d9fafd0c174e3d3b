"""Prompt templates, the bounded context, the streamed-reply parser and the control agents (all Ray-free)."""

import asyncio
import json

import pytest

from agents.config import AgentRefused, load_agents_config, resolve_agent
from agents.control import ControlAgentConfig, PatternControl, _class_of
from agents.prompts import BUILTIN_PATTERNS, Persona, TemplateError, example_messages, render, wants_json
from agents.reply_parser import FALLBACK_TEXT, ReplyDecoder, ReplyParser, speakable
from common.config_errors import ConfigError
from speech.models_config import load_models_config


def test_templates():
    patterns = {**BUILTIN_PATTERNS, "greet": "Say hi to {vars:user}."}
    text = render("You are {vars:name}. {prompt_pattern:greet} {character_agent_message_format_voice_tone} {other} {\"x\": 1}",
                  patterns, {"name": "Joe", "user": "Ann"})
    assert text.startswith("You are Joe. Say hi to Ann. Respond only with this JSON object, voice_tone first")
    assert text.endswith('{other} {"x": 1}')  # unknown bare names and JSON are left alone
    assert wants_json(text)
    with pytest.raises(TemplateError, match="unknown prompt pattern 'nope'"):
        render("{prompt_pattern:nope}", patterns, {})
    with pytest.raises(TemplateError, match="unknown variable 'age'"):
        render("{vars:age}", patterns, {"name": "Joe"})


def test_examples_and_bounded_context():
    examples = example_messages([{"user": "Hi", "assistant": {"voice_tone": "warm", "text": "Hello"}},
                                 {"role": "user", "content": "Bye"}])
    assert examples == [{"role": "user", "content": "Hi"},
                        {"role": "assistant", "content": '{"voice_tone": "warm", "text": "Hello"}'},
                        {"role": "user", "content": "Bye"}]
    persona = Persona("S" * 400, (), False)  # about 100 tokens
    history = [{"role": "assistant", "content": "greeting"}] + [
        {"role": r, "content": f"{r} {n} " + "x" * 396} for n in range(10) for r in ("user", "assistant")]
    history.append({"role": "user", "content": "last question"})
    messages = persona.messages(history, budget_tokens=500)
    assert messages[0]["role"] == "system" and messages[-1]["content"] == "last question"
    assert messages[1]["role"] == "user" and len(messages) < len(history)  # oldest dropped, never opens on a reply
    assert persona.messages(history[:3], 10_000)[1:] == history[:3]  # everything fits: greeting kept


def test_decoder_json_escapes_split_across_chunks():
    raw = json.dumps({"voice_tone": "sad", "text": "He said \"no\"\nand caf\u00e9 \\ end"}, ensure_ascii=True)
    decoder = ReplyDecoder()
    for char in raw:
        decoder.feed(char)
    assert decoder.tone == "sad" and decoder.text == "He said \"no\"\nand caf\u00e9 \\ end"


def test_decoder_fenced_malformed_and_plain():
    decoder = ReplyDecoder()
    decoder.feed('```json\n{"voice_tone": "warm", "text": "Fenced."}\n```')
    assert decoder.text == "Fenced." and decoder.tone == "warm"
    broken = ReplyDecoder()
    broken.feed('{"voice_tone": "warm", "answer": 3}')
    broken.finish()
    assert broken.text == FALLBACK_TEXT
    plain = ReplyParser("neutral")
    segments = plain.feed("Just *plain* text, here. And “more”.") + plain.finish()
    assert [s.spoken for s in segments] == ["Just plain text, here.", "And more."]
    assert plain.tone == "neutral" and plain.text == "Just *plain* text, here. And “more”."


def test_narrator_aside_without_sentence_end_and_punctuation_only_pieces():
    parser = ReplyParser()
    segments = parser.feed("@she nods slowly@ ... Yes") + parser.finish()
    assert [(s.role, s.text, s.spoken) for s in segments] == [
        ("narrator", "@she nods slowly@", "she nods slowly"), ("character", "Yes", "Yes")]
    assert speakable("**Bold** _it_ `code` # x") == "Bold it code x"


def test_control_agents():
    control = PatternControl(["I can't", "as an AI"])
    assert asyncio.run(control("Sure! Here it is.")) is True
    assert asyncio.run(control("Sorry, I cant do that.")) is False  # apostrophes do not matter
    config = ControlAgentConfig(model="pattern_matching", denial_phrases=["x"], giveup_response="Fine.")
    assert config.temperatures(0.5) == [0.5, 0.75, 1.125] and config.giveup_response == ["Fine."]
    assert _class_of('```json\n{"class": "refusal"}\n```') == "refusal" and _class_of('{"class": "ok",') == "ok"
    with pytest.raises(ValueError, match="denial_phrases"):
        ControlAgentConfig(model="pattern_matching").check()


def _write(tmp_path, body: str):
    path = tmp_path / "agents.yaml"
    path.write_text(body)
    return path


def test_config_errors_name_agent_and_field(tmp_path):
    models = load_models_config("models.yaml")
    bad_pattern = _write(tmp_path, "agents:\n  a:\n    llm_model: m\n    system_prompt: '{prompt_pattern:missing}'\n")
    with pytest.raises(ConfigError, match=r"agent 'a': field 'system_prompt': unknown prompt pattern 'missing'"):
        load_agents_config(bad_pattern, models)
    bad_ref = _write(tmp_path, "agents:\n  a:\n    llm_model: m\n    control_agent: ghost\n")
    with pytest.raises(ConfigError, match=r"agent 'a': field 'control_agent': no agent named 'ghost'"):
        load_agents_config(bad_ref, models)
    ok = _write(tmp_path, "agents:\n  a:\n    llm_model: m\n    control_agent: c\n  c:\n    llm_model: judge\n"
                          "    system_prompt: Classify.\n    denial_classes: [refusal]\n")
    agent = load_agents_config(ok, models).agents["a"]
    assert agent.control.model == "judge" and agent.control.denial_classes == ["refusal"]
    assert agent.control.system_prompt == "Classify."


def test_client_policy_for_llm_agents(tmp_path):
    models = load_models_config("models.yaml")
    config = load_agents_config(_write(tmp_path, "agents:\n  a:\n    llm_model: m\nclient_agent_config:\n"
                                                 "  allow_new_agents: true\n  allowed_llm_models: [m]\n"), models)
    assert resolve_agent(config, models, "mine", {"llm_model": "m", "system_prompt": "Hi {vars:x}", "vars": {"x": "y"}}
                         ).persona.system_prompt == "Hi y"
    for agent_config, code in (
        ({"llm_model": "gpt-4o"}, "model_not_allowed"),
        ({"llm_model": "m", "control_agent": {"model": "gpt-4o", "system_prompt": "s", "denial_classes": ["d"]}},
         "model_not_allowed"),
        ({"llm_model": "m", "control_agent": "a"}, "bad_agent_config"),
        ({"llm_model": "m", "greetings": {"choices": [{"content": "x", "file": "/etc/passwd"}]}}, "file_not_allowed"),
        ({"llm_model": "m", "system_prompt": "{prompt_pattern:nope}"}, "bad_agent_config"),
    ):
        with pytest.raises(AgentRefused) as refused:
            resolve_agent(config, models, "mine", agent_config)
        assert refused.value.code == code, agent_config
