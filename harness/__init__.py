"""Test and benchmark helpers shared by tests/ and scripts/ (both may import this package; neither imports
the other): the real graph as a subprocess (server), Piper-made test speech and WER (speech), a scripted
OpenAI-compatible LLM (scripted_llm), a loopback HTTP tool server (tool_server) and an MCP server written with
the SDK (mcp_test_server) for the server-side tools, both served in a thread (loopback), XTTS-v2 files with random
weights (xtts), our /v1/realtime server events checked against the openai SDK's types (realtime_types), and what
the benchmark
scripts share: percentiles, table cells, plots, JSON reports (report). Caches stay under tests/.cache/
(git-ignored)."""
