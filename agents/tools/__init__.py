"""Server-side tools: http tools and MCP servers declared per agent in agents.yaml, checked at load, run by the
server when the LLM calls them (Ray-free). Import from the modules: ``calls`` (ToolCall, ToolResult: stdlib only, so
the reply loop and the transports can use them without loading an executor), ``spec`` (the specs and
``check_tools``), ``toolbox`` (Toolbox, McpHub, probe_mcp_servers)."""
