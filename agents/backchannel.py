"""Backchannels: "mhm", "yeah", "okay" said while the agent speaks are listening, not interrupting.

In call mode the user's voice over the agent's reply stops it (barge-in after ``barge_in_min_speech_s`` of
speech), and a listener's "mhm" would cut the agent off and become a turn of its own. So with backchannels
configured, speech over the agent is judged first: as soon as sustained speech starts, what was said so far
is transcribed (one short Whisper pass); a word that is not a backchannel, more than
``backchannel_max_words`` words, or speech going on past ``backchannel_max_s`` is a real interruption and
stops the agent; an utterance that ends as a backchannel is dropped: no barge-in, no user message, no turn.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from speech.repetition import normalize

DEFAULT_BACKCHANNELS = ("mhm", "mm", "mmm", "hmm", "mm-hmm", "uh-huh", "uh huh", "aha", "yeah", "yes", "yep", "yup",
                        "okay", "ok", "right", "sure", "alright", "i see", "got it", "oh", "ah", "wow", "cool", "nice",
                        "great")

# What Whisper writes for a sound that is no word: its best-known hallucinations on noise and silence ("Thank
# you.", "you", "Bye."), and laughs and hesitations. Annotations in brackets ("(coughs)", "[Music]", "*laughs*")
# are no words either. Speech over the agent, or in the resume window, that says only these is taken for noise.
DEFAULT_NOISE_PHRASES = ("thank you", "thank you very much", "thank you so much", "thanks", "thanks for watching",
                         "thank you for watching", "you", "bye", "bye bye", "so", "ha", "haha", "ha ha", "hahaha",
                         "ha ha ha", "heh", "hehe", "ah", "ahh", "uh", "um", "er", "ahem", "hm", "hmm", "hmmm", "m", "mm", "mmm",
                         "mmmm", "e", "eh", "ehh")
_ANNOTATION = re.compile(r"\([^)]*\)|\[[^\]]*\]|\*[^*]*\*|\u266a[^\u266a]*\u266a?")


def words_of(text: str) -> list[str]:
    """The words of a transcript as compared, annotations left out ("Uh-huh, (laughs)" gives "uh", "huh")."""
    return [normalize(w) for w in re.split(r"[\s\-]+", _ANNOTATION.sub(" ", text)) if normalize(w)]


def _drawn_out(words: list[str]) -> list[str]:
    """Words with any letter held three times or more written once ("hmmmm" and "hmmm" give "hm", "eeee" "e"):
    Whisper spells a held sound with as many letters as it likes."""
    return [re.sub(r"(.)\1{2,}", r"\1", w) for w in words]


def noise_phrases(phrases: Iterable[str]) -> frozenset[str]:
    """The configured noise phrases as compared: their words joined by one space."""
    return frozenset(" ".join(_drawn_out(words_of(p))) for p in phrases if words_of(p))


def is_noise(text: str, phrases: frozenset[str]) -> bool:
    """Whether ``text`` is what Whisper makes of a sound that is no word: nothing but annotations, or one of
    ``phrases`` (said once or repeated: "Thank you. Thank you.", however drawn out: "Ehhhhh.")."""
    words = _drawn_out(words_of(text))
    if not words:
        return bool(text.strip())
    joined = " ".join(words)
    return joined in phrases or any(joined == " ".join([p] * (len(words) // len(p.split())))
                                    for p in phrases if len(words) % len(p.split()) == 0)


def backchannel_words(phrases: Iterable[str]) -> frozenset[str]:
    """Every word of the configured phrases, as compared ("uh-huh" gives "uh", "huh" and "uhhuh")."""
    words: set[str] = set()
    for phrase in phrases:
        for part in re.split(r"[\s\-]+", phrase):
            if normalize(part):
                words.add(normalize(part))
        words.add(normalize(phrase))
    return frozenset(words)


def is_backchannel(text: str, allowed: frozenset[str], max_words: int) -> bool:
    """Whether ``text`` says nothing but backchannel words, and few of them. An empty text is not one (the
    words are not known yet)."""
    heard = words_of(text)
    return 0 < len(heard) <= max_words and all(w in allowed for w in heard)


def could_become_backchannel(text: str, allowed: frozenset[str], max_words: int) -> bool:
    """While the user is still speaking: nothing heard yet, or only backchannel words so far."""
    return not text.strip() or is_backchannel(text, allowed, max_words)

