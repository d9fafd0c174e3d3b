"""Audio and model code, Ray-free: PCM conversion, resampling, STT and TTS backends."""
