"""LocalAgreement and the streaming window, driven by a scripted transcriber (Whisper's role)."""

from speech.streaming import LocalAgreement, StreamingConfig, StreamingTranscriber
from speech.stt import Transcript, Word


def words(text: str, start: float = 0.0, step: float = 0.4) -> list[Word]:
    return [Word(" " + w, start + i * step, start + i * step + 0.3, 0.9) for i, w in enumerate(text.split())]


def test_agreement_confirms_the_common_prefix():
    agreement = LocalAgreement()
    assert agreement.insert(words("on")) == []
    assert LocalAgreement.text(agreement.insert(words("on saturday morning"))) == "on"
    assert LocalAgreement.text(agreement.insert(words("on saturday morning we"))) == "saturday morning"
    assert LocalAgreement.text(agreement.pending) == "we"


def test_agreement_ignores_stretched_word_times():
    """The last word of a window often gets an end at the window's end: text alignment does not care."""
    agreement = LocalAgreement()
    first = words("hello there")
    first[-1] = Word(" there", 0.4, 5.0, 0.9)  # stretched
    agreement.insert(first)
    agreement.insert(words("hello there my friend"))
    agreement.insert(words("hello there my friend how"))
    assert LocalAgreement.text(agreement.confirmed) == "hello there my friend"


def test_repeated_words_after_a_new_window_are_dropped():
    agreement = LocalAgreement()
    agreement.insert(words("the red car"))
    agreement.confirm_all(words("the red car"))
    agreement.window_moved()
    agreement.insert(words("red car is fast"))  # Whisper repeats the last confirmed words
    agreement.confirm_all(words("red car is fast"))
    assert LocalAgreement.text(agreement.confirmed) == "the red car is fast"


async def test_transcriber_trims_the_window_and_keeps_every_word():
    script = "one two three four five six seven eight nine ten eleven twelve".split()
    seen_windows = []

    async def transcribe(pcm: bytes, prompt):
        start = round(transcriber._window_start_s, 3)
        seconds = len(pcm) / 32_000
        seen_windows.append((start, seconds, prompt))
        # one word per second of audio, timed absolutely then made window-relative
        heard = [Word(" " + w, i - start, i + 0.8 - start, 0.9) for i, w in enumerate(script)
                 if i >= start - 0.01 and i + 0.8 <= start + seconds]
        return Transcript(" ".join(w.text for w in heard), heard, seconds)

    transcriber = StreamingTranscriber(transcribe, StreamingConfig(update_interval_s=1.0, max_window_s=4.0))
    for _ in range(12):
        transcriber.add(b"\x00\x00" * 16_000)
        await transcriber.update()
    text = await transcriber.finish()
    assert text == " ".join(script)
    assert max(s for _, s, _ in seen_windows) <= 6.0  # bounded work per update
    # conditioned on the confirmed text before the window, never on words inside it
    prompted = [(start, p) for start, _, p in seen_windows if p]
    assert prompted and all(p.split()[-1] == script[int(round(start)) - 1] for start, p in prompted)


async def test_finish_without_new_speech_needs_no_extra_pass():
    calls = []

    async def transcribe(pcm, prompt):
        calls.append(len(pcm))
        return Transcript("a b", words("a b"), len(pcm) / 32_000)

    transcriber = StreamingTranscriber(transcribe)
    transcriber.add(b"\x00\x00" * 16_000)
    await transcriber.update(until_s=0.9)  # the listener's pass when the user fell silent, cut where they did
    transcriber.add(b"\x00\x00" * 3_200)  # only silence after the update
    assert await transcriber.finish(speech_end_s=0.9) == "a b"
    assert calls == [int(0.9 * 32_000)]
    transcriber.add(b"\x00\x00" * 3_200)
    await transcriber.finish(speech_end_s=None)
    assert len(calls) == 2


async def test_the_settling_pass_ends_where_the_speech_ended_not_where_the_frames_did():
    """A pass that ran to the end of whatever frame had arrived does not settle the utterance: the last pass
    hears the window up to ``speech_end_s``, so the words do not depend on the client's frame size."""
    calls = []

    async def transcribe(pcm, prompt):
        calls.append(len(pcm))
        return Transcript("a b", words("a b"), len(pcm) / 32_000)

    for frame_s in (0.02, 0.1, 0.5):
        calls.clear()
        transcriber = StreamingTranscriber(transcribe)
        for _ in range(round(1.5 / frame_s)):
            transcriber.add(b"\x00\x00" * round(16_000 * frame_s))
            if transcriber.due():
                await transcriber.update()
        assert await transcriber.finish(speech_end_s=1.22) == "a b"
        assert calls[-1] == int(1.22 * 32_000) // 2 * 2, (frame_s, calls)


async def test_audio_that_arrives_during_an_update_is_never_trimmed():
    """An update that heard nothing may drop old silence, but not the speech that came in meanwhile."""
    import asyncio

    release = asyncio.Event()

    async def transcribe(pcm, prompt):
        await release.wait()
        return Transcript("", [], len(pcm) / 32_000)

    transcriber = StreamingTranscriber(transcribe, StreamingConfig(idle_keep_s=1.0))
    transcriber.add(b"\x00\x00" * 8_000)  # 0.5 s analyzed by the update below
    update = asyncio.ensure_future(transcriber.update())
    await asyncio.sleep(0)
    transcriber.add(b"\x01\x00" * 48_000)  # 3 s more arrive while Whisper runs
    release.set()
    await update
    assert transcriber.window_s == 3.5  # nothing analyzed was older than idle_keep_s: nothing dropped


def aligned(*tokens: tuple[str, float]) -> list[Word]:
    """Words as Whisper's alignment gives them: every punctuation mark its own word, with its own time."""
    return [Word(text, at, at + 0.2, 0.9) for text, at in tokens]


def test_alignment_punctuation_joins_its_word():
    from speech.stt import merge_punctuation

    merged = merge_punctuation(aligned((" What", 0.0), (" time", 0.3), (" is", 0.6), (" it", 0.8), ("?", 1.0),
                                       (" Hello", 1.5), (",", 1.7), (" Anna", 1.8), (".", 2.1)))
    assert [w.text for w in merged] == [" What", " time", " is", " it?", " Hello,", " Anna."]
    assert (merged[3].start, merged[3].end) == (0.8, 1.0)  # the word keeps its own times, not the mark's
    quoted = merge_punctuation(aligned((" He", 0.0), (" said", 0.2), (' "', 0.4), ("yes", 0.5), ('."', 0.7)))
    assert [w.text for w in quoted] == [" He", " said", ' "yes."']
    opening = merge_punctuation(aligned((" (", 0.0), ("maybe", 0.1), (")", 0.3), (" -", 0.4), ("no", 0.5)))
    assert [w.text for w in opening] == [" (maybe)", " -no"]
    assert merge_punctuation([]) == [] and merge_punctuation(aligned(("?", 0.0))) == []  # no word to join


async def test_punctuation_and_case_survive_streaming():
    """Partials and the settled transcript keep Whisper's punctuation and casing; the agreement still
    compares words without them (a window's last word often gets a period that the next pass drops)."""
    passes = [
        aligned((" What", 0.0), (" will", 0.3), (" the", 0.5), (" weather", 0.7), (".", 1.0)),
        aligned((" What", 0.0), (" will", 0.3), (" the", 0.5), (" weather", 0.7), (" be", 1.1), (" like", 1.3), (".", 1.5)),
        aligned((" What", 0.0), (" will", 0.3), (" the", 0.5), (" weather", 0.7), (" be", 1.1), (" like", 1.3),
                (" in", 1.6), (" Lisbon", 1.8), ("?", 2.2)),
    ]
    from speech.stt import merge_punctuation

    calls = iter(passes + [passes[-1]])

    async def transcribe(pcm: bytes, prompt):
        heard = merge_punctuation(next(calls))
        return Transcript(LocalAgreement.text(heard), heard, len(pcm) / 32_000)

    transcriber = StreamingTranscriber(transcribe)
    shown = []
    for _ in range(3):
        transcriber.add(b"\x00\x00" * 16_000)
        shown.append((await transcriber.update()).text)
    assert shown == ["What will the weather.", "What will the weather be like.", "What will the weather be like in Lisbon?"]
    transcriber.add(b"\x00\x00" * 8_000)
    assert await transcriber.finish() == "What will the weather be like in Lisbon?"


async def test_a_partial_never_shows_a_run_formed_with_the_confirmed_words():
    transcriber = StreamingTranscriber(lambda pcm, prompt: None)  # type: ignore[arg-type]
    transcriber.agreement.confirm_all(words("ancient coins an an"))
    transcriber.agreement.pending = words("an an and a garden")
    assert transcriber.hypothesis().text == "ancient coins an an and a garden"


def test_confirmed_words_take_the_newer_punctuation():
    """A window's last word gets Whisper's period; once a newer pass hears what follows, its text wins."""
    agreement = LocalAgreement()
    agreement.insert(aligned((" ancient", 0.0), (" coins.", 0.4)))
    agreement.insert(aligned((" ancient", 0.0), (" coins.", 0.4), (" And", 0.9)))
    assert LocalAgreement.text(agreement.confirmed) == "ancient coins."
    agreement.insert(aligned((" ancient", 0.0), (" coins,", 0.4), (" and", 0.9), (" a", 1.1), (" garden.", 1.3)))
    assert LocalAgreement.text(agreement.confirmed) == "ancient coins, and"
    assert agreement.confirmed[1].start == 0.4  # times stay those of the confirmed word
