"""Prompts: the system prompt of a persona (templates resolved), few-shot examples, and a bounded context.

Templates in ``system_prompt``, ``examples`` and greetings:
- ``{prompt_pattern:NAME}``: a built-in pattern (below) or one from ``prompt_patterns:`` in agents.yaml;
- ``{NAME}`` for a built-in pattern name (the older README form, e.g. ``{character_agent_message_format_voice_tone}``);
- ``{vars:NAME}``: the agent's ``vars``.
Any other braces are left alone (a persona may well talk about JSON).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

NARRATOR_MARKER = "@"

_VOICE_TONE_DESCRIPTION = """<voice tone> tells the voice generator how to say <character response text>. It is strictly one of:
  - "neutral": a normal conversation, like with a new acquaintance or in business
  - "warm": a warm conversation, like with a friend or a partner
  - "excited": excited, like a happy announcement or surprising news
  - "sad": sad, like a sad story"""

_NARRATOR_DESCRIPTION = f"""<character response text> may contain comments by a narrator, in the third person and enclosed in {NARRATOR_MARKER}.
Examples:
  - Are you serious?! {NARRATOR_MARKER}her eyes widened{NARRATOR_MARKER} How are you going to do that?
  - {NARRATOR_MARKER}he looks down{NARRATOR_MARKER} I'm not sure I can do that."""

# The tone comes FIRST, so speech can start (in the right voice) while the text is still being generated.
_JSON_FORMAT = 'Respond only with this JSON object, voice_tone first: {"voice_tone": "<voice tone>", "text": "<character response text>"}'

BUILTIN_PATTERNS: dict[str, str] = {
    "character_agent_message_format_voice_tone": f"{_JSON_FORMAT}\n{_VOICE_TONE_DESCRIPTION}",
    "character_agent_message_format_narrator_comments": f"{_JSON_FORMAT}\n{_VOICE_TONE_DESCRIPTION}\n{_NARRATOR_DESCRIPTION}",
}

_TEMPLATE = re.compile(r"\{(prompt_pattern|vars):([A-Za-z0-9_.-]+)\}|\{([A-Za-z0-9_]+)\}")


class TemplateError(ValueError):
    """A template names a pattern or variable that does not exist; the message names it."""


def render(text: str, patterns: Mapping[str, str], variables: Mapping[str, Any]) -> str:
    """Resolve the templates of one string; patterns may use ``{vars:...}`` themselves."""

    def replace(match: re.Match[str]) -> str:
        kind, name, bare = match.group(1), match.group(2), match.group(3)
        if bare is not None:  # the older form: only built-in or configured pattern names are templates
            return render(patterns[bare], patterns, variables) if bare in patterns else match.group(0)
        if kind == "prompt_pattern":
            if name not in patterns:
                raise TemplateError(f"unknown prompt pattern {name!r} (known: {sorted(patterns)})")
            return render(patterns[name], patterns, variables)
        if name not in variables:
            raise TemplateError(f"unknown variable {name!r} (vars has {sorted(variables)})")
        return str(variables[name])

    return _TEMPLATE.sub(replace, text)


def join_prompt(prompt: str | list[str] | None) -> str:
    if prompt is None:
        return ""
    return "\n".join(prompt) if isinstance(prompt, list) else prompt


def wants_json(system_prompt: str) -> bool:
    """A persona asked for the JSON reply format (voice tone + text), as the original server decided it."""
    return '"voice_tone"' in system_prompt or "json" in system_prompt.lower()


def example_messages(examples: Iterable[Any]) -> list[dict[str, Any]]:
    """Few-shot pairs: ``{user, assistant}`` objects (the old format) or ``{role, content}`` messages."""
    out: list[dict[str, Any]] = []
    for example in examples:
        if isinstance(example, dict) and "role" in example:
            out.append({"role": str(example["role"]), "content": example.get("content", "")})
            continue
        if not isinstance(example, dict):
            raise TemplateError("an example must be {user, assistant} or {role, content}")
        for role in ("user", "assistant"):
            if role in example:
                content = example[role]
                out.append({"role": role, "content": content if isinstance(content, str) else json.dumps(content)})
    return out


def estimate_tokens(content: Any) -> int:
    """A provider-neutral estimate (about 4 characters a token; an image counts as a fixed 85)."""
    if isinstance(content, str):
        return len(content) // 4 + 1
    if isinstance(content, list):
        return sum(85 if part.get("type") == "image_url" else estimate_tokens(part.get("text", "")) for part in content)
    return estimate_tokens(json.dumps(content))


@dataclass(frozen=True)
class Persona:
    """What the LLM is told before the conversation: the resolved system prompt and the examples."""

    system_prompt: str
    examples: tuple[dict[str, Any], ...]
    json_replies: bool

    def messages(self, history: list[dict[str, Any]], budget_tokens: int) -> list[dict[str, Any]]:
        """System prompt + examples + the most recent history that fits ``budget_tokens`` (always the last one)."""
        head: list[dict[str, Any]] = []
        if self.system_prompt:
            head.append({"role": "system", "content": self.system_prompt})
        head += list(self.examples)
        left = budget_tokens - sum(estimate_tokens(x["content"]) + 4 for x in head)
        kept: list[dict[str, Any]] = []
        for message in reversed(history):
            calls = json.dumps(message["tool_calls"]) if "tool_calls" in message else ""
            cost = estimate_tokens(message["content"] or "") + estimate_tokens(calls) + 4
            if kept and cost > left:
                break
            kept.append(message)
            left -= cost
        kept.reverse()
        while len(kept) < len(history) and len(kept) > 1 and kept[0]["role"] in ("assistant", "tool"):
            kept.pop(0)  # a context should not open with a reply to a question that was cut off (nor a tool result)
        return head + kept
