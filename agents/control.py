"""Control agents: a check on the start of each reply that makes the persona try again when it refuses.

``model: pattern_matching`` looks for ``denial_phrases``; any other ``model`` is an LLM classifier that gets
the reply text and answers ``{"class": "..."}``: a class in ``denial_classes`` is a refusal. A refused
attempt is retried at a higher temperature (times ``temperature_multiplier``), ``giveup_after`` attempts in
all; then one of the ``giveup_response`` texts is said instead. Replies stream, so the check runs on the
first sentence, held back until it passes (refusals come first in practice).
"""

from __future__ import annotations

import json
import logging
import random
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field, field_validator

from llm.text import strip_code_fence

log = logging.getLogger("voi.control")

PATTERN_MATCHING = "pattern_matching"


class ControlAgentConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    model: str
    denial_phrases: list[str] = Field(default_factory=list)
    denial_classes: list[str] = Field(default_factory=list)
    system_prompt: str | list[str] | None = None
    examples: list[Any] = Field(default_factory=list)
    temperature_multiplier: float = Field(default=1.5, gt=0, le=10)
    giveup_after: int = Field(default=3, ge=1, le=10)
    giveup_response: list[str] = Field(default_factory=list)

    @field_validator("giveup_response", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value or []

    @property
    def is_pattern_matching(self) -> bool:
        return self.model == PATTERN_MATCHING

    def check(self) -> None:
        if self.is_pattern_matching and not self.denial_phrases:
            raise ValueError("a pattern_matching control agent needs 'denial_phrases'")
        if not self.is_pattern_matching and not (self.denial_classes and self.system_prompt):
            raise ValueError("an LLM control agent needs 'system_prompt' and 'denial_classes'")

    def temperatures(self, base: float) -> list[float]:
        return [round(base * self.temperature_multiplier**i, 4) for i in range(self.giveup_after)]

    def giveup_text(self, rng: random.Random) -> str | None:
        return rng.choice(self.giveup_response) if self.giveup_response else None


def _normalize(text: str) -> str:
    return " ".join(re.sub(r"['\"\u2019\u2018\u201c\u201d]", "", text).lower().split())


class Verdict(Protocol):
    async def __call__(self, text: str) -> bool: ...  # True: the reply may be said


@dataclass
class PatternControl:
    phrases: list[str]

    async def __call__(self, text: str) -> bool:
        said = _normalize(text)
        return not any(_normalize(phrase) in said for phrase in self.phrases)


Complete = Callable[[list[dict[str, Any]], str], Awaitable[str]]  # (messages, model) -> reply text


@dataclass
class LlmControl:
    config: ControlAgentConfig  # resolved (agents/agent.py): its system prompt one string, its examples messages
    complete: Complete

    async def __call__(self, text: str) -> bool:
        messages = [{"role": "system", "content": self.config.system_prompt}, *self.config.examples,
                    {"role": "user", "content": text}]
        answer = await self.complete(messages, self.config.model)
        label = _class_of(answer)
        log.info("control agent %s classified the reply start as %r", self.config.model, label)
        return label not in self.config.denial_classes


def _class_of(answer: str) -> str:
    body = strip_code_fence(answer)
    try:
        data = json.loads(body)
        if isinstance(data, dict) and "class" in data:
            return str(data["class"]).strip()
    except json.JSONDecodeError:
        pass
    match = re.search(r'"class"\s*:\s*"([^"]+)"', answer)
    return match.group(1).strip() if match else body.strip().strip('"')
