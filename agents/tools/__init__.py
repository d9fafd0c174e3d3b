"""Tools an agent's LLM may call: the server's own (http tools and MCP servers, from agents.yaml) and the
client's (declared by the client, run by the client)."""
