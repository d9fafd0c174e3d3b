"""Voice activity with hysteresis, and the end-of-turn rule of call mode.

Call mode ends the user's turn in one of two ways (``turn_detection``). ``timer``: after ``end_of_turn_s``
of silence, or ``quick_end_of_turn_s`` when the transcript already ends a sentence. ``model``: when an
utterance ends (``utterance_end_s`` of silence), the end-of-turn model (Smart Turn, speech/turn_model.py)
hears its last seconds; a confident "complete" ends the turn at once, the transcript's punctuation
lowers the bar the model must pass, and an "incomplete" waits up to ``turn_max_wait_s`` of silence for
more (``sentence_max_wait_s`` when the settled transcript ends a sentence: a cut is cheap to take back, see
``resume_window_s``). Without a model answer (none installed, an error, or still running) the timer's rule applies.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agents.backchannel import DEFAULT_BACKCHANNELS, DEFAULT_NOISE_PHRASES
from common.config_errors import describe_validation_error
from speech.vad import WINDOW_SECONDS

VadEvent = Literal["start", "end"]


class TurnConfig(BaseModel):
    """Tunables of listening (all in seconds of audio); the server's defaults suit 16 kHz speech."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    speech_threshold: float = Field(default=0.5, gt=0, lt=1)  # Silero probability that counts as speech
    silence_threshold: float = Field(default=0.35, gt=0, lt=1)  # ... and as silence again (hysteresis)
    min_speech_s: float = Field(default=0.1, ge=0)  # speech needed to start an utterance (one noisy window does not)
    utterance_end_s: float = Field(default=0.2, gt=0)  # silence that ends an utterance: its transcript settles
    end_of_turn_s: float = Field(default=0.7, gt=0)  # call mode: trailing silence that ends the user's turn
    quick_end_of_turn_s: float = Field(default=0.3, gt=0)  # ... when the transcript already ends a sentence
    pre_roll_s: float = Field(default=0.3, ge=0)  # audio kept from before an utterance starts (call mode)
    update_interval_s: float = Field(default=0.5, gt=0)  # partial transcript cadence while speaking
    max_window_s: float = Field(default=12.0, ge=2, le=25)  # streaming window before it is trimmed
    # Barge-in (call mode): the user talks over the agent only after this much speech at this level or above;
    # the agent's own voice leaking back through the echo canceller is quieter and does not interrupt.
    barge_in_min_speech_s: float = Field(default=0.15, ge=0.03)
    barge_in_min_dbfs: float = Field(default=-42.0, le=0)
    turn_detection: Literal["timer", "model"] = "model"  # call mode: how the end of the user's turn is found
    turn_complete_threshold: float = Field(default=0.5, gt=0, lt=1)  # model: "complete" at this probability
    turn_punctuation_threshold: float = Field(default=0.3, gt=0, lt=1)  # ... or this, when the text ends a sentence
    turn_max_wait_s: float = Field(default=2.0, gt=0)  # model: silence after which an "incomplete" turn ends anyway
    # Speech over the agent that says only these words (at most backchannel_max_words of them, and for less
    # than backchannel_max_s) neither interrupts it nor becomes a turn (agents/backchannel.py); () turns it off.
    backchannels: tuple[str, ...] = DEFAULT_BACKCHANNELS
    backchannel_max_words: int = Field(default=3, ge=1)
    backchannel_max_s: float = Field(default=1.2, gt=0)
    # Whisper's words for sounds that are no words (a cough heard as "Thank you.", "you", "Bye."): speech over
    # the agent, or in the resume window, that says only these neither interrupts nor reopens (agents/backchannel.py).
    noise_phrases: tuple[str, ...] = DEFAULT_NOISE_PHRASES
    # Forgiveness and speculation (docs/listening.md, "Turn-taking that forgives"). Words within resume_window_s
    # of the end of the user's turn reopen it: a reply under way stops, the two parts are one user turn, answered
    # once it ends again (0: off). An abandoned reply stays in the history only if more than resume_keep_heard_s
    # of it was played.
    resume_window_s: float = Field(default=1.5, ge=0)
    resume_keep_heard_s: float = Field(default=0.6, ge=0)
    # Start the reply (LLM and the first sentence's synthesis) when an utterance's transcript settles, before
    # the turn is known to be over; used if the turn ends with the same words, dropped unseen otherwise.
    speculate: bool = True
    # model: a settled transcript that ends a sentence ends the turn after this much silence, whatever the model
    # says (an "incomplete" otherwise waits turn_max_wait_s).
    sentence_max_wait_s: float = Field(default=0.6, gt=0)

    def for_phone(self) -> TurnConfig:
        """These settings for a caller on the phone network (8 kHz G.711): ``PHONE_PROFILE`` over them
        (docs/listening.md). A transport whose audio is narrowband applies it before an agent's own
        ``turn_taking`` fields (``with_agent``), which still win."""
        return TurnConfig.model_validate({**self.model_dump(), **PHONE_PROFILE})

    def with_agent(self, override: Mapping[str, Any]) -> TurnConfig:
        """These server-wide settings with an agent's own ``turn_taking`` fields over them (checked by
        ``check_turn_taking`` when the agent was loaded)."""
        return TurnConfig.model_validate({**self.model_dump(), **override}) if override else self


# What a phone line changes (docs/listening.md, "Phone-quality listening": measured by
# scripts/bench_turns.py --phone); the phone transport picks it up with TurnConfig.for_phone().
PHONE_PROFILE: dict[str, Any] = {
    # Smart Turn scores unfinished speech higher on a phone line (three of ten cut sentences went from
    # 0.14-0.52 to 0.70-0.76): ask more of it where the transcript does not end a sentence. Where it does, the
    # punctuation threshold applies as before (the complete clips' phone scores stay >= 0.65).
    "turn_complete_threshold": 0.8,
    # The caller hears the reply later and is heard later (the phone network's jitter buffers and transcoding add
    # a few hundred ms each way): the same forgiveness needs a window longer by that round trip on our clock.
    "resume_window_s": 2.0,
    # Not barge_in_min_speech_s: 0.1 s started the judging on a short "Stop," at 11 of 12 alignments (0.15 s: about
    # half, the next word ~0.4 s later), but on the graph a noise judged that early was heard as words ("I'm going
    # to see you.") and cleared the reply: a noise must never stop it (docs/listening.md).
}


def check_turn_taking(override: Mapping[str, Any], where: str) -> dict[str, Any]:
    """An agent's ``turn_taking`` block: known fields with valid values, or a ConfigError naming them."""
    try:
        TurnConfig.model_validate(override)
    except ValidationError as exc:
        raise describe_validation_error(exc, source=where, entry="field 'turn_taking'") from None
    return dict(override)


@dataclass
class VoiceActivity:
    """Turns per-window speech probabilities into utterance start and end events."""

    config: TurnConfig
    speaking: bool = False
    speech_run_s: float = 0.0  # consecutive speech while not yet speaking
    silence_s: float = 0.0  # consecutive silence while speaking, or since the last utterance ended
    heard_speech: bool = False  # any utterance since reset()

    def reset(self) -> None:
        self.speaking = False
        self.speech_run_s = 0.0
        self.silence_s = 0.0
        self.heard_speech = False

    def update(self, probability: float) -> VadEvent | None:
        cfg = self.config
        if not self.speaking:
            self.silence_s += WINDOW_SECONDS
            if probability >= cfg.speech_threshold:
                self.speech_run_s += WINDOW_SECONDS
                if self.speech_run_s >= cfg.min_speech_s:
                    self.speaking, self.heard_speech, self.silence_s = True, True, 0.0
                    return "start"
            else:
                self.speech_run_s = 0.0
            return None
        if probability < cfg.silence_threshold:
            self.silence_s += WINDOW_SECONDS
            if self.silence_s >= cfg.utterance_end_s:
                self.speaking, self.speech_run_s = False, 0.0
                return "end"
        else:
            self.silence_s = 0.0
        return None


def ends_sentence(text: str) -> bool:
    return text.rstrip().endswith((".", "?", "!"))


# English words a sentence hardly ever ends with ("a table for ...", "John and ..."): Whisper (tiny.en here)
# often writes a period where the audio stopped, so a transcript ending in one of them is taken as unfinished.
DANGLING = frozenset("a an the and or but because so of to for with at in on from by about into than that "
                     "my your our their his her its i we you they is are was were am if when while as".split())


def open_ended(text: str) -> bool:
    """The transcript stops mid-thought: a trailing comma, dash or ellipsis, or a word no sentence ends with."""
    text = text.rstrip()
    if text.endswith((",", "-", "...", "\u2026", ";", ":")):
        return True
    words = text.split()
    return bool(words) and not text.endswith(("?", "!")) and words[-1].strip(".,;:\"'").lower() in DANGLING


def end_of_turn(activity: VoiceActivity, transcript: str, config: TurnConfig, complete: float | None = None,
                pending: bool = False, settled: bool = True) -> bool:
    """Call mode: is the user done? ``complete`` is the end-of-turn model's probability for the utterance
    that just ended; ``pending`` says its answer is still on the way (None and not pending: the timer);
    ``settled`` says ``transcript`` already holds that utterance's last words (the model's answer often comes
    first: "She said that the" would be judged as "She said that", or as nothing at all)."""
    if activity.speaking or not activity.heard_speech:
        return False
    finished_sentence = settled and ends_sentence(transcript) and not open_ended(transcript)
    if config.turn_detection == "model" and pending and complete is None:
        waited = config.sentence_max_wait_s if finished_sentence else config.turn_max_wait_s
        return activity.silence_s >= min(waited, config.turn_max_wait_s)
    if config.turn_detection == "model" and complete is not None:
        if activity.silence_s >= config.turn_max_wait_s:
            return True
        if not settled or open_ended(transcript):
            return False
        if finished_sentence and activity.silence_s >= config.sentence_max_wait_s:
            return True
        threshold = config.turn_punctuation_threshold if ends_sentence(transcript) else config.turn_complete_threshold
        return complete >= threshold
    if activity.silence_s >= config.end_of_turn_s:
        return True
    return activity.silence_s >= config.quick_end_of_turn_s and ends_sentence(transcript) and not open_ended(transcript)
