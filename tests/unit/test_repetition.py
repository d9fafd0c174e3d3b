"""Whisper repetition loops: found and cut in word lists, and in every windowed pass of the streaming path."""

from speech.repetition import compression_ratio, drop_repeats, has_loop, repeated_runs
from speech.streaming import LocalAgreement, StreamingConfig, StreamingTranscriber
from speech.stt import Transcript, Word

LOOP = "a large collection of ancient coins an an an an an an an an an an an an an and a garden"
CLEAN = "a large collection of ancient coins an and a garden"


def words(text: str, start: float = 0.0, step: float = 0.4) -> list[Word]:
    return [Word(" " + w, start + i * step, start + i * step + 0.3, 0.9) for i, w in enumerate(text.split())]


def text(ws: list[Word]) -> str:
    return LocalAgreement.text(ws)


def test_a_run_of_one_word_is_kept_once():
    assert text(drop_repeats(words(LOOP))) == CLEAN
    assert has_loop(words(LOOP)) and not has_loop(words(CLEAN))


def test_runs_of_ngrams_are_kept_once():
    assert text(drop_repeats(words("we went to the the the the shop"))) == "we went to the shop"
    assert text(drop_repeats(words("i said thank you thank you thank you so much"))) == "i said thank you so much"
    assert text(drop_repeats(words("go on and on and on and on now"))) == "go on and on now"
    assert text(drop_repeats(words("it is a b c a b c a b c a b c end"))) == "it is a b c end"
    four = "thank you for watching " * 5
    assert text(drop_repeats(words("so " + four + "bye"))) == "so thank you for watching bye"


def test_natural_doubles_survive():
    for natural in ("it was very very good", "he had had enough", "that that is is that that is not is not",
                    "thank you thank you", "the cat sat on the mat and the dog sat on the rug"):
        assert text(drop_repeats(words(natural))) == natural
        assert not has_loop(words(natural)), natural


def test_punctuation_and_case_do_not_hide_a_loop():
    ws = [Word(t, i, i + 0.5, 0.9) for i, t in enumerate([" The", " coins,", " an", " An,", " an.", " an", " and"])]
    assert [w.text for w in drop_repeats(ws)] == [" The", " coins,", " an", " and"]
    assert drop_repeats(ws)[2].start == 2  # the first occurrence keeps its own times


def test_runs_report_the_widest_cover():
    assert repeated_runs(["x", "a", "a", "a", "a", "y"]) == [(1, 1, 4)]
    assert repeated_runs(["a", "b", "a", "b", "a", "b"]) == [(0, 2, 3)]
    assert repeated_runs(["a", "a", "b", "b"]) == []
    assert repeated_runs([]) == [] and drop_repeats([]) == []


def test_compression_ratio_flags_a_long_phrase_loop():
    phrase = "and then we walked down to the river by the old mill "
    assert compression_ratio(phrase * 6) > 2.4 > compression_ratio(CLEAN)
    assert has_loop(words(phrase * 6))


TRUTH = "the museum has a large collection of ancient coins and a garden with a small fountain".split()


def _looping_whisper(transcriber: list[StreamingTranscriber], loop_passes: range, loop_without_prompt: bool):
    """A fake Whisper hearing TRUTH (a word every 0.5 s) in the window, whose passes numbered in
    ``loop_passes`` loop after "coins" (the retry without a prompt too, if ``loop_without_prompt``)."""
    calls: list[str | None] = []
    state = {"passes": 0, "looped": False}

    async def transcribe(pcm: bytes, prompt: str | None) -> Transcript:
        start, seconds = transcriber[0]._window_start_s, len(pcm) / 32_000
        retry = state["looped"] and calls[-1] is not None and prompt is None
        if not retry:
            state["passes"] += 1
        calls.append(prompt)
        loops = (state["passes"] in loop_passes) and (not retry or loop_without_prompt)
        heard = [Word(" " + w, i * 0.5 - start, i * 0.5 + 0.4 - start, 0.9) for i, w in enumerate(TRUTH)
                 if i * 0.5 >= start - 0.01 and i * 0.5 + 0.4 <= start + seconds]
        coins = [i for i, w in enumerate(heard) if w.text == " coins"]
        state["looped"] = bool(coins) and loops
        if state["looped"]:
            at = coins[0] + 1
            heard = heard[:at] + [Word(" an", heard[at - 1].end + 0.05 * k, heard[at - 1].end + 0.05 * (k + 1), 0.3)
                                  for k in range(13)]
        return Transcript(text(heard), heard, seconds)

    return transcribe, calls


async def _stream(loop_passes: range, loop_without_prompt: bool) -> tuple[StreamingTranscriber, list[str], str, list]:
    holder: list[StreamingTranscriber] = []
    transcribe, calls = _looping_whisper(holder, loop_passes, loop_without_prompt)
    transcriber = StreamingTranscriber(transcribe, StreamingConfig(update_interval_s=0.5, max_window_s=3.0))
    holder.append(transcriber)
    partials = []
    for _ in range(16):  # 8 s of audio, half a second at a time
        transcriber.add(b"\x00\x00" * 8_000)
        partials.append((await transcriber.update()).text)
    return transcriber, partials, await transcriber.finish(), calls


async def test_a_looping_partial_pass_is_fixed_by_a_pass_without_the_prompt():
    """Successive passes loop alike (the agreement would confirm the loop); without the prompt they do not."""
    transcriber, partials, final, calls = await _stream(range(9, 14), loop_without_prompt=False)
    assert transcriber.loops > 0 and None in calls[9:]
    for shown in partials + [final]:
        assert not has_loop(words(shown)), shown
    assert final == " ".join(TRUTH)


async def test_a_loop_that_survives_the_retry_is_cut():
    transcriber, partials, final, calls = await _stream(range(9, 14), loop_without_prompt=True)
    assert transcriber.loops > 0
    for shown in partials + [final]:
        assert not has_loop(words(shown)), shown
        assert shown.split().count("an") <= 1, shown
    assert final.replace(" an ", " ") == " ".join(TRUTH)  # at most the loop's one word stays


async def test_a_looping_final_pass_is_repaired():
    truth_words = "the museum has a large collection of ancient coins and a garden".split()
    calls: list[str | None] = []

    async def transcribe(pcm: bytes, prompt: str | None) -> Transcript:
        calls.append(prompt)
        heard = words(" ".join(truth_words[: min(len(truth_words), len(pcm) // 16_000)]), step=0.5)
        if len(calls) == 3:  # the final pass loops, with or without a prompt
            heard = heard[:9] + [Word(" an", 5.0, 5.1, 0.2)] * 13 + heard[9:]
        return Transcript(text(heard), heard, len(pcm) / 32_000)

    transcriber = StreamingTranscriber(transcribe)
    for _ in range(2):
        transcriber.add(b"\x00\x00" * 96_000)  # 6 s at a time
        await transcriber.update()
    transcriber.add(b"\x00\x00" * 32_000)
    final = await transcriber.finish()
    assert len(calls) == 3  # no prompt inside the first window: nothing to retry without, the run is dropped
    assert final == "the museum has a large collection of ancient coins an and a garden"
    assert transcriber.loops == 1


async def test_a_loop_is_first_retried_without_the_prompt():
    seen: list[str | None] = []

    async def transcribe(pcm: bytes, prompt: str | None) -> Transcript:
        seen.append(prompt)
        heard = words("coins and a garden")
        if prompt:
            heard = words("coins" + " an" * 10 + " and a garden")
        return Transcript(text(heard), heard, len(pcm) / 32_000)

    transcriber = StreamingTranscriber(transcribe)
    transcriber.agreement.confirm_all(words("a large collection of ancient"))
    transcriber.agreement.window_moved()
    transcriber.add(b"\x00\x00" * 32_000)
    assert await transcriber.finish() == "a large collection of ancient coins and a garden"
    assert seen == ["a large collection of ancient", None]


def test_agreement_drops_a_loop_formed_across_passes():
    """The agreement's own guard, should a loop reach it past the passes' repair."""
    agreement = LocalAgreement()
    agreement.confirm_all(words("ancient coins an an"))
    agreement.confirm_all(words("ancient coins an an an an and a garden"))
    assert text(agreement.confirmed) == "ancient coins an and a garden"
    assert agreement.in_window == len(agreement.confirmed)
    agreement = LocalAgreement()
    agreement.confirm_all(words("it was very very"))
    agreement.confirm_all(words("it was very very good"))
    assert text(agreement.confirmed) == "it was very very good"


async def test_an_empty_retry_is_not_taken_for_silence():
    async def transcribe(pcm: bytes, prompt: str | None) -> Transcript:
        heard = words("coins" + " an" * 10 + " and a garden") if prompt else []
        return Transcript(text(heard), heard, len(pcm) / 32_000)

    transcriber = StreamingTranscriber(transcribe)
    transcriber.agreement.confirm_all(words("ancient"))
    transcriber.agreement.window_moved()
    transcriber.add(b"\x00\x00" * 32_000)
    assert await transcriber.finish() == "ancient coins an and a garden"
