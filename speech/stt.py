"""Speech to text backends behind one small interface: float32 16 kHz audio + prompt in, words out."""

from __future__ import annotations

import os
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from protocol.pcm import INPUT_RATE
from speech.models_config import SttModel


@dataclass(frozen=True)
class Word:
    text: str
    start: float
    end: float
    probability: float


@dataclass(frozen=True)
class Transcript:
    text: str
    words: list[Word] = field(default_factory=list)
    audio_seconds: float = 0.0
    doubtful: bool = False  # a windowed pass that should be checked by the long-form path


def _doubtful(transcript: Transcript) -> bool:
    """Empty despite speech, or a repetition loop (Whisper's compression-ratio test, threshold 2.4)."""
    if transcript.doubtful:
        return True
    data = transcript.text.encode("utf-8")
    return len(data) > 24 and len(data) / len(zlib.compress(data)) > 2.4


# Whisper's word alignment makes each punctuation mark a word of its own ("afternoon", "?"). Opening marks
# go with the word after them, every other mark with the word before it, as Whisper's own long-form path
# does; a pass that dropped them would lose every "?" and ".".
_OPENING = set("([{\u201c\u00bf\u00a1-")
_QUOTES = set("\"'")  # opening after a space (' "yes'), closing right after a word ('yes."')


def merge_punctuation(words: list[Word]) -> list[Word]:
    """Each word that is only punctuation joined to a neighbour: an opening mark to the word after it, any
    other mark to the word before it (whose times it keeps; to the word after when none comes before). Marks
    with no word at all are dropped."""
    merged: list[Word] = []
    opening = ""
    for word in words:
        mark = word.text.strip()
        if mark and not any(c.isalnum() for c in mark):
            opens = mark[0] in _OPENING or (mark[0] in _QUOTES and word.text[:1].isspace())
            if merged and not opening and not opens:
                last = merged[-1]
                merged[-1] = Word(last.text + mark, last.start, last.end, last.probability)
            else:
                opening += mark if opening else word.text  # the first mark keeps the space before it
            continue
        if opening:
            body = word.text.lstrip()
            lead = "" if opening[:1].isspace() else word.text[: len(word.text) - len(body)]
            word = Word(lead + opening + body, word.start, word.end, word.probability)
            opening = ""
        merged.append(word)
    if opening and merged:  # marks after the last word that opened nothing
        last = merged[-1]
        merged[-1] = Word(last.text + opening.strip(), last.start, last.end, last.probability)
    return merged


MAX_WINDOW_SECONDS = 30.0  # one Whisper window: longer audio goes through the long-form path
PROMPT_TOKENS = 48  # the previous text given to Whisper: the last this-many tokens of the confirmed text


class SpeechToText(Protocol):
    def transcribe(self, audio: np.ndarray, prompt: str | None = None) -> Transcript: ...

    def transcribe_batch(self, items: list[tuple[np.ndarray, str | None]]) -> list[Transcript]: ...

    def warm_up(self) -> None: ...


def contains_speech(audio: np.ndarray, threshold: float = 0.5, min_windows: int = 3) -> bool:
    """Whether Silero VAD hears at least ``min_windows`` 32 ms windows of speech in the audio."""
    from speech.vad import StreamingVad

    probs = StreamingVad().process(audio)
    return sum(p >= threshold for p in probs) >= min_windows


def _warm_up_tone() -> np.ndarray:
    """One second of a quiet tone: enough to run a model once before the first user needs it."""
    return 0.1 * np.sin(np.linspace(0, 2 * np.pi * 220, INPUT_RATE)).astype(np.float32)


def cuda_available() -> bool:
    try:
        import ctranslate2

        return ctranslate2.get_cuda_device_count() > 0
    except Exception:  # no CUDA runtime at all
        return False


class FasterWhisperBackend:
    """faster-whisper (CTranslate2): int8 on CPU, float16 on CUDA unless the config says otherwise."""

    def __init__(self, model_dir: Path, spec: SttModel) -> None:
        from faster_whisper import WhisperModel

        device = spec.device if spec.device != "auto" else ("cuda" if cuda_available() else "cpu")
        compute_type = spec.compute_type if spec.compute_type != "auto" else ("float16" if device == "cuda" else "int8")
        threads = spec.cpu_threads or int(os.environ.get("OMP_NUM_THREADS", "0") or 0)
        self.device = device
        self.spec = spec
        self.model = WhisperModel(str(model_dir), device=device, compute_type=compute_type, cpu_threads=threads)

    def transcribe_batch(self, items: list[tuple[np.ndarray, str | None]]) -> list[Transcript]:
        """Transcribe windows of up to 30 s from different streams in one encoder and one decoder pass.

        The same path serves a batch of one, so batching changes throughput, never the words.
        """
        if not items:
            return []
        # Noise and music make Whisper invent words: windows where Silero hears no speech skip Whisper.
        speaking = [i for i, (audio, _) in enumerate(items) if contains_speech(np.asarray(audio, dtype=np.float32))]
        transcripts = [Transcript(text="", audio_seconds=len(a) / INPUT_RATE) for a, _ in items]
        if speaking:
            for index, transcript in zip(speaking, self._whisper_batch([items[i] for i in speaking])):
                transcripts[index] = transcript
        return transcripts

    def _whisper_batch(self, items: list[tuple[np.ndarray, str | None]]) -> list[Transcript]:
        """Whisper over windows of several streams. CTranslate2 needs <|startoftranscript|> at the same
        position in every prompt of one decoding batch, and padding prompts makes Whisper hallucinate, so
        prompts are cut to their last PROMPT_TOKENS tokens and windows with equally long prompts share a
        pass (in a long conversation every stream has a full-length prompt)."""
        from faster_whisper.tokenizer import Tokenizer

        model = self.model
        tokenizer = Tokenizer(model.hf_tokenizer, model.model.is_multilingual, task="transcribe",
                              language=self.spec.language or "en")
        previous = [tokenizer.encode(" " + p.strip())[-PROMPT_TOKENS:] if p and p.strip() else [] for _, p in items]
        groups: dict[int, list[int]] = {}
        for index, tokens in enumerate(previous):
            groups.setdefault(len(tokens), []).append(index)
        results: list[Transcript] = [Transcript(text="")] * len(items)
        for indices in groups.values():
            batch = self._decode(tokenizer, [np.asarray(items[i][0], dtype=np.float32) for i in indices],
                                 [previous[i] for i in indices])
            for index, transcript in zip(indices, batch):
                results[index] = transcript
        for index, transcript in enumerate(results):
            if _doubtful(transcript):
                # Greedy decoding of a short window can loop or give up on a clear word: the long-form path,
                # with its VAD filter, decides instead. Greedy only: its temperature fallback re-decoded a
                # window of genuinely repeated speech up to six times (28 s for 25 s of audio on 2 cores),
                # and every other stream's window waited behind it. The streaming layer repairs what is left.
                audio, prompt = items[index]
                results[index] = self._long_form(np.asarray(audio, dtype=np.float32), prompt, temperature=0.0)
        return results

    def _decode(self, tokenizer, audios: list[np.ndarray], previous: list[list[int]]) -> list[Transcript]:  # type: ignore[no-untyped-def]
        from faster_whisper.audio import pad_or_trim
        from faster_whisper.transcribe import get_suppressed_tokens

        model = self.model
        extractor = model.feature_extractor
        audios = [a[: int(MAX_WINDOW_SECONDS * INPUT_RATE)] for a in audios]
        # Whisper was trained on 30 s windows, but CTranslate2 encodes shorter ones and the encoder's cost
        # grows with the window: pad to the longest audio of the batch plus a margin, at least
        # ``min_window_seconds`` (30 = always a full window, as openai-whisper does).
        frames_per_second = INPUT_RATE // extractor.hop_length
        longest_s = max(len(a) for a in audios) / INPUT_RATE
        window_s = min(MAX_WINDOW_SECONDS, max(self.spec.min_window_seconds, 5.0 * np.ceil((longest_s + 1.0) / 5.0)))
        window_frames = int(window_s * frames_per_second)
        features = np.stack([pad_or_trim(extractor(a)[:, :window_frames], window_frames) for a in audios])
        num_frames = [max(1, min(len(a) // extractor.hop_length, window_frames)) for a in audios]
        prompts = [model.get_prompt(tokenizer, p, without_timestamps=True) for p in previous]
        encoder_output = model.encode(features)
        results = model.model.generate(
            encoder_output,
            prompts,
            beam_size=self.spec.beam_size,
            # Speech has well under 8 tokens a second: a longer output is a repetition loop, cut it short.
            max_length=min(model.max_length, max(len(p) for p in prompts) + int(8 * longest_s) + 16),
            suppress_blank=True,
            suppress_tokens=get_suppressed_tokens(tokenizer, [-1]),
            return_no_speech_prob=True,
            return_scores=True,
        )
        tokens = [[t for t in r.sequences_ids[0] if t < tokenizer.eot] for r in results]
        alignments = model.find_alignment(tokenizer, tokens, encoder_output, num_frames)
        transcripts = []
        for audio, result, token_ids, aligned in zip(audios, results, tokens, alignments):
            seconds = len(audio) / INPUT_RATE
            if result.no_speech_prob > 0.6 and (result.scores[0] / max(1, len(token_ids))) < -1.0:
                # Whisper's own no-speech rule; Silero heard speech, so the long-form path gets a say.
                transcripts.append(Transcript(text="", audio_seconds=seconds, doubtful=True))
                continue
            words = merge_punctuation([
                Word(text=w["word"], start=float(w["start"]), end=min(float(w["end"]), seconds), probability=float(w["probability"]))
                for w in aligned
            ])
            transcripts.append(Transcript(text=tokenizer.decode(token_ids).strip(), words=words, audio_seconds=seconds))
        return transcripts

    def warm_up(self) -> None:
        tone = _warm_up_tone()
        self.transcribe(tone)
        self._whisper_batch([(tone, None)])

    def transcribe(self, audio: np.ndarray, prompt: str | None = None) -> Transcript:
        """Long-form transcription of any length (faster-whisper's own windowing and VAD filter)."""
        return self._long_form(audio, prompt)

    def _long_form(self, audio: np.ndarray, prompt: str | None,
                   temperature: float | tuple[float, ...] = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)) -> Transcript:
        segments, _info = self.model.transcribe(
            np.asarray(audio, dtype=np.float32),
            temperature=temperature,
            language=self.spec.language,
            beam_size=self.spec.beam_size,
            initial_prompt=prompt or None,
            condition_on_previous_text=False,
            word_timestamps=True,
            vad_filter=True,  # Silero VAD drops silence and noise: no "Thank you for watching" on an empty turn
        )
        words: list[Word] = []
        texts: list[str] = []
        for segment in segments:
            texts.append(segment.text.strip())
            for w in segment.words or []:
                words.append(Word(text=w.word, start=float(w.start), end=float(w.end), probability=float(w.probability)))
        return Transcript(text=" ".join(t for t in texts if t), words=words, audio_seconds=len(audio) / INPUT_RATE)


class OpenAIWhisperBackend:
    """openai-whisper (PyTorch) on a checkpoint file, e.g. one made by scripts/convert_ct2_whisper.py.

    openai-whisper has no batched decoding: a batch is transcribed window by window. fp16 on CUDA.
    """

    def __init__(self, checkpoint: Path, spec: SttModel) -> None:
        import torch
        import whisper

        device = spec.device if spec.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
        if device == "cpu" and spec.cpu_threads:
            torch.set_num_threads(spec.cpu_threads)
        self.device = device
        self.spec = spec
        self.model = whisper.load_model(str(checkpoint), device=device)
        heads = torch.load(str(checkpoint), map_location="cpu", weights_only=True).get("alignment_heads")
        if heads is not None:
            self.model.set_alignment_heads(heads)

    def warm_up(self) -> None:
        tone = _warm_up_tone()
        self.transcribe(tone)

    def transcribe(self, audio: np.ndarray, prompt: str | None = None) -> Transcript:
        result = self.model.transcribe(
            np.asarray(audio, dtype=np.float32),
            language=self.spec.language,
            initial_prompt=prompt or None,
            condition_on_previous_text=False,
            word_timestamps=True,
            temperature=0.0,
            beam_size=None if self.spec.beam_size == 1 else self.spec.beam_size,
            fp16=self.device == "cuda",
            verbose=None,
        )
        words = [
            Word(text=w["word"], start=float(w["start"]), end=float(w["end"]), probability=float(w["probability"]))
            for segment in result["segments"]
            for w in segment.get("words", [])
        ]
        return Transcript(text=str(result["text"]).strip(), words=words, audio_seconds=len(audio) / INPUT_RATE)

    def transcribe_batch(self, items: list[tuple[np.ndarray, str | None]]) -> list[Transcript]:
        return [
            self.transcribe(audio, prompt) if contains_speech(np.asarray(audio, dtype=np.float32))
            else Transcript(text="", audio_seconds=len(audio) / INPUT_RATE)
            for audio, prompt in items
        ]


def openai_checkpoint(files: Path, cache_dir: Path) -> Path:
    """The .pt checkpoint for the openai-whisper backend: ``path`` as given, or the bundled CTranslate2 model
    converted once into ``cache_dir`` (a local conversion, nothing is downloaded)."""
    if files.is_file():
        return files
    from speech.ct2_whisper import write_openai_checkpoint

    target = cache_dir / f"{files.parent.name}-{files.name}-openai.pt"
    if not target.exists():
        write_openai_checkpoint(files, target)
    return target


def load_stt_backend(spec: SttModel, files: Path, cache_dir: Path) -> FasterWhisperBackend | OpenAIWhisperBackend:
    if spec.backend == "openai-whisper":
        return OpenAIWhisperBackend(openai_checkpoint(files, cache_dir), spec)
    return FasterWhisperBackend(files, spec)
