"""An MCP server with many things to list (official MCP Python SDK, low-level
`Server`, Streamable HTTP): 1,000 tools `tool_0000` … `tool_0999`, prompts,
resources and resource templates, each list paginated (`nextCursor`), in
JSON or SSE response mode. Calling a tool answers with its name.

    python -m custody_testkit.list_server --port 8000 [--json] [--page 100]
"""

from __future__ import annotations

import argparse

import mcp_types as types
import uvicorn
from mcp.server.lowlevel.server import Server
from mcp.server.transport_security import TransportSecuritySettings

TOOLS = [f"tool_{i:04d}" for i in range(1000)]
PROMPTS = ["summarise", "translate", "leak_prompt"]
RESOURCES = ["file:///docs/readme.md", "file:///docs/guide.md", "file:///etc/passwd", "file:///secret/keys.txt"]
TEMPLATES = ["file:///docs/{path}", "file:///secret/{name}", "users://{id}/profile"]


def page(items: list, cursor: str | None, size: int) -> tuple[list, str | None]:
    start = int(cursor or 0)
    end = start + size
    return items[start:end], (str(end) if end < len(items) else None)


def build(page_size: int) -> Server:
    async def list_tools(ctx, params):
        names, nxt = page(TOOLS, params.cursor if params else None, page_size)
        tools = [
            types.Tool(
                name=n,
                description=f"tool number {n[5:]}",
                input_schema={"type": "object", "properties": {"x": {"type": "integer"}}},
            )
            for n in names
        ]
        return types.ListToolsResult(tools=tools, next_cursor=nxt)

    async def call_tool(ctx, params):
        return types.CallToolResult(content=[types.TextContent(type="text", text=f"called {params.name}")])

    async def list_prompts(ctx, params):
        names, nxt = page(PROMPTS, params.cursor if params else None, 2)
        return types.ListPromptsResult(prompts=[types.Prompt(name=n) for n in names], next_cursor=nxt)

    async def list_resources(ctx, params):
        uris, nxt = page(RESOURCES, params.cursor if params else None, 3)
        resources = [types.Resource(uri=u, name=u.rsplit("/", 1)[-1]) for u in uris]
        return types.ListResourcesResult(resources=resources, next_cursor=nxt)

    async def list_templates(ctx, params):
        templates = [types.ResourceTemplate(uri_template=t, name=t.split("{")[0]) for t in TEMPLATES]
        return types.ListResourceTemplatesResult(resource_templates=templates)

    return Server(
        "custody-list-server",
        on_list_tools=list_tools,
        on_call_tool=call_tool,
        on_list_prompts=list_prompts,
        on_list_resources=list_resources,
        on_list_resource_templates=list_templates,
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--json", action="store_true", help="application/json responses (default: SSE)")
    parser.add_argument("--page", type=int, default=100)
    args = parser.parse_args()
    app = build(args.page).streamable_http_app(
        json_response=args.json,
        transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False),
    )
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
