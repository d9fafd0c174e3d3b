"""XTTS-v2 (coqui-tts) text-to-speech: streams float32 audio at 24 kHz while the model is still generating.

Ray-free. Needs the optional PyTorch extra (`scripts/setup.sh --with-xtts`); see docs/xtts.md for the
install, the models.yaml entry and measured numbers.

How a sentence is streamed: XTTS's GPT turns text into audio tokens one at a time; every N tokens the
HiFiGAN decoder renders the latents of the whole sentence so far, and the part not yet sent is handed out,
cross-faded with the previous chunk's tail (`Xtts.handle_chunks`). That is `Xtts.inference_stream`'s loop;
it is driven here step by step instead of through `inference_stream` for two reasons:
- chunk sizes: inference_stream takes one `stream_chunk_size`. Here the first chunk can be smaller
  (`first_chunk_size` tokens) so the first audio leaves sooner, and later chunks use `stream_chunk_size`
  (fewer decoder passes: each one re-renders the sentence so far).
- sharing: the model keeps the current sentence's prefix embedding on itself (`store_prefix_emb`) and reads
  it at every generation step. Each step here re-stores this stream's own prefix under a lock, so several
  streams (sessions) can interleave on one model without hearing each other's text.
With first_chunk_size == stream_chunk_size the chunks are exactly inference_stream's (a test checks this).
"""

from __future__ import annotations

import argparse
import logging
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from speech.audio import OUTPUT_RATE, resample

logger = logging.getLogger(__name__)

CROSSFADE_SAMPLES = 1024  # inference_stream's default overlap_wav_len


class XttsBackend:
    """One XTTS model loaded from the files of a downloaded XTTS-v2 (or any fine-tune of it).

    ``checkpoint`` model.pth, ``config`` config.json, ``tokenizer`` vocab.json, ``voices`` a torch-saved dict
    speaker name -> {"gpt_cond_latent", "speaker_embedding"} (XTTS-v2's speakers_xtts.pth format).
    ``stream_chunk_size``: GPT tokens per streamed chunk (one token is 1024 samples at 22.05 kHz, ~46 ms of
    audio); ``first_chunk_size``: tokens in the first chunk (default: stream_chunk_size).
    ``fp16`` runs the model under float16 autocast, on CUDA only (ignored on CPU). ``threads``: torch's
    intra-op threads on CPU, for the whole process (default: torch's own choice, which follows
    OMP_NUM_THREADS; Ray sets that for its workers, to 1 for a fractional CPU). More threads than free cores
    is much slower than fewer: on a busy 2-core machine, 1 thread beat 2 by 3-5x.
    """

    def __init__(
        self,
        checkpoint: str | os.PathLike[str],
        config: str | os.PathLike[str],
        tokenizer: str | os.PathLike[str],
        voices: str | os.PathLike[str],
        language: str = "en",
        use_cuda: bool = False,
        fp16: bool = False,
        stream_chunk_size: int = 20,
        first_chunk_size: int | None = None,
        default_voice: str | None = None,
        threads: int | None = None,
    ) -> None:
        import torch
        from TTS.tts.configs.xtts_config import XttsConfig
        from TTS.tts.models.xtts import Xtts

        if stream_chunk_size < 1 or (first_chunk_size is not None and first_chunk_size < 1):
            raise ValueError("stream_chunk_size and first_chunk_size must be at least 1 token")
        for role, path in {
            "checkpoint": checkpoint,
            "config": config,
            "tokenizer": tokenizer,
            "voices": voices,
        }.items():
            if not Path(path).is_file():
                raise FileNotFoundError(f"XTTS {role} file not found: {path}")
        if use_cuda and not torch.cuda.is_available():
            raise RuntimeError("XTTS: use_cuda is set but torch sees no CUDA device")
        if fp16 and not use_cuda:
            logger.warning("XTTS: fp16 needs CUDA; running in float32 on the CPU")
        self.device = torch.device("cuda" if use_cuda else "cpu")
        self.fp16 = fp16 and use_cuda
        self.stream_chunk_size = stream_chunk_size
        self.first_chunk_size = first_chunk_size or stream_chunk_size
        if threads and not use_cuda:
            torch.set_num_threads(threads)

        self.config = XttsConfig()
        self.config.load_json(str(config))
        languages = self.config.languages or []
        if language not in languages and language.split("-")[0] not in languages:
            raise ValueError(f"XTTS: language {language!r} is not one of the model's languages {languages}")
        self.language = language

        model = Xtts(self.config)
        # Note: coqui-tts rewrites an original XTTS-v2 model.pth once, in place (it drops a pickled config).
        model.load_checkpoint(
            self.config,
            checkpoint_path=str(checkpoint),
            vocab_path=str(tokenizer),
            speaker_file_path=str(voices),
            eval=True,
        )
        self._model = model.to(self.device)
        self.output_rate = int(self.config.model_args.output_sample_rate)

        speakers = model.speaker_manager.speakers if model.speaker_manager is not None else {}
        self._voices = {}
        for name, latents in speakers.items():
            if not isinstance(latents, dict) or {"gpt_cond_latent", "speaker_embedding"} - latents.keys():
                raise ValueError(f"{voices}: speaker {name!r} lacks gpt_cond_latent/speaker_embedding")
            self._voices[name] = (
                latents["gpt_cond_latent"].to(self.device),
                latents["speaker_embedding"].to(self.device),
            )
        if not self._voices:
            raise ValueError(f"{voices}: no speakers")
        self.default_voice = default_voice or next(iter(self._voices))
        if self.default_voice not in self._voices:
            raise KeyError(self._unknown_voice(self.default_voice))
        self._lock = threading.Lock()

    def voices(self) -> list[str]:
        return list(self._voices)

    def _unknown_voice(self, voice: str) -> str:
        return f"unknown XTTS voice {voice!r}; known voices: {', '.join(self._voices)}"

    def synthesize(self, text: str, voice: str | None, speed: float) -> Iterator[np.ndarray]:
        """Yield float32 mono chunks at 24 kHz as the model makes them (not clipped). ``speed`` > 1 is faster
        (XTTS stretches its latents by 1/speed before decoding). Closing the generator stops generation
        before the next chunk. Raises KeyError for an unknown voice (when called, before any audio)."""
        name = voice or self.default_voice
        if name not in self._voices:
            raise KeyError(self._unknown_voice(name))
        if speed <= 0:
            raise ValueError(f"speed must be positive, not {speed}")
        return self._stream(text, *self._voices[name], speed)

    def _stream(self, text, gpt_cond_latent, speaker_embedding, speed: float) -> Iterator[np.ndarray]:
        import torch

        # torch's decorator form enters inference mode around each resume of the generator only, so the
        # caller's thread is never left in inference mode between chunks.
        @torch.inference_mode()
        def chunks():
            sentence = text.strip().lower()
            if not sentence:
                return
            model, gpt, autocast = self._model, self._model.gpt, self._autocast
            tokens = torch.IntTensor(model.tokenizer.encode(sentence, lang=self.language)).unsqueeze(0)
            tokens = tokens.to(self.device)
            if tokens.shape[-1] >= model.args.gpt_max_text_tokens:
                raise ValueError(f"XTTS: text too long ({tokens.shape[-1]} tokens): {text[:60]!r}")
            # Autocast, like inference mode, is per thread: entered around each computation, never across a
            # yield (the caller may resume this generator from another worker thread).
            with self._lock, autocast():
                inputs = gpt.compute_embeddings(gpt_cond_latent, tokens)
                prefix = gpt.gpt_inference.cached_prefix_emb
                steps = gpt.get_generator(
                    fake_inputs=inputs,
                    do_sample=True,
                    num_beams=1,
                    num_return_sequences=1,
                    output_attentions=False,
                    output_hidden_states=True,
                    return_dict_in_generate=True,
                    **self._sampling(),
                )
            latents, pending, previous, overlap = [], 0, None, None
            wanted = self.first_chunk_size
            try:
                while True:
                    with self._lock, autocast():
                        gpt.gpt_inference.store_prefix_emb(prefix)
                        step = next(steps, None)
                    last = step is None
                    if not last:
                        latents.append(step[1])
                        pending += 1
                        if pending < wanted:
                            continue
                    elif not latents:
                        return
                    sofar = torch.cat(latents, dim=0)[None, :]
                    if speed != 1.0:
                        sofar = torch.nn.functional.interpolate(
                            sofar.transpose(1, 2), scale_factor=1.0 / speed, mode="linear"
                        ).transpose(1, 2)
                    with autocast():
                        wav = model.hifigan_decoder(sofar, g=speaker_embedding).squeeze()
                    # The last chunk also carries the tail held back for the cross-fade.
                    chunk, previous, overlap = model.handle_chunks(
                        wav, previous, overlap, CROSSFADE_SAMPLES, is_final=last
                    )
                    audio = chunk.float().cpu().numpy()
                    if self.output_rate != OUTPUT_RATE:
                        audio = resample(audio, self.output_rate, OUTPUT_RATE)
                    yield audio
                    if last:
                        return
                    pending, wanted = 0, self.stream_chunk_size
            finally:
                steps.close()

        return chunks()

    def _sampling(self) -> dict:
        config = self.config
        return {
            "temperature": config.temperature,
            "length_penalty": float(config.length_penalty),
            "repetition_penalty": float(config.repetition_penalty),
            "top_k": config.top_k,
            "top_p": config.top_p,
        }

    def _autocast(self):
        import contextlib

        import torch

        if self.fp16:
            return torch.autocast(device_type="cuda", dtype=torch.float16)
        return contextlib.nullcontext()


def main() -> None:
    """Time to first chunk and real-time factor for one sentence (the numbers in docs/xtts.md)."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument(
        "model_dir", type=Path, help="folder with model.pth, config.json, vocab.json, speakers_xtts.pth"
    )
    parser.add_argument("--text", default="The quick brown fox jumps over the lazy dog near the quiet river bank.")
    parser.add_argument("--voice", default=None)
    parser.add_argument("--cuda", action="store_true")
    parser.add_argument("--fp16", action="store_true")
    parser.add_argument("--stream-chunk-size", type=int, default=20)
    parser.add_argument("--first-chunk-size", type=int, default=None)
    parser.add_argument(
        "--max-seconds", type=float, default=None, help="stop after this much audio (random models never stop)"
    )
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()

    started = time.perf_counter()
    backend = XttsBackend(
        checkpoint=args.model_dir / "model.pth",
        config=args.model_dir / "config.json",
        tokenizer=args.model_dir / "vocab.json",
        voices=args.model_dir / "speakers_xtts.pth",
        use_cuda=args.cuda,
        fp16=args.fp16,
        stream_chunk_size=args.stream_chunk_size,
        first_chunk_size=args.first_chunk_size,
        threads=args.threads,
    )
    print(f"load: {time.perf_counter() - started:.2f} s; voices: {len(backend.voices())}")
    for run in range(args.runs):
        started, cpu_started = time.perf_counter(), time.process_time()
        first, samples, chunks = None, 0, 0
        stream = backend.synthesize(args.text, args.voice, 1.0)
        for chunk in stream:
            first = first or time.perf_counter() - started
            samples += chunk.size
            chunks += 1
            if args.max_seconds and samples >= args.max_seconds * OUTPUT_RATE:
                stream.close()
                break
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
        seconds = samples / OUTPUT_RATE
        # CPU time (all threads) is the steadier number on a shared machine; with one thread it is the time
        # the run would take on an idle core.
        print(
            f"run {run + 1}: first chunk {first * 1000:.0f} ms, {chunks} chunks, {seconds:.2f} s of audio in "
            f"{elapsed:.2f} s (real-time factor {elapsed / seconds:.2f}; CPU time {cpu:.2f} s)"
        )


if __name__ == "__main__":
    main()
