"""The PCM on the wire, in one place: clients send 16 kHz and play 24 kHz, mono PCM16 both ways.

Every rate, sample width and bytes-per-second figure in the code is read from here (``speech/audio.py``
re-exports the rates for the audio code).
"""

INPUT_RATE = 16_000  # what clients send
OUTPUT_RATE = 24_000  # what clients play
BYTES_PER_SAMPLE = 2  # PCM16, mono
INPUT_BYTES_PER_SECOND = INPUT_RATE * BYTES_PER_SAMPLE
OUTPUT_BYTES_PER_SECOND = OUTPUT_RATE * BYTES_PER_SAMPLE
