"""The system prompt: built by one function from the tool schemas and the project context file (IFLOW.md).
Kept short on purpose: small models are trained on exactly this text."""
from __future__ import annotations

import posixpath
import shlex
from typing import Any

DEFAULT_TEMPLATE = """\
You are iFlow, a coding agent working in {workdir}. Solve the task with tools. Call one tool per turn as:
<tool_call>{{"name": "<tool>", "arguments": {{...}}}}</tool_call>
Tools (* = required):
{tools}
Results arrive in <tool_response>. Check your work, then call submit.{project_context}"""

PROJECT_FILE = "IFLOW.md"
MAX_PROJECT_CONTEXT_CHARS = 4000


def _type_text(schema: dict[str, Any]) -> str:
    if "enum" in schema:
        return "|".join(str(value) for value in schema["enum"])
    if schema.get("type") == "array":
        return f"[{_type_text(schema.get('items', {}))}, ...]"
    return str(schema.get("type", "any"))


def tool_line(schema: dict[str, Any]) -> str:
    """`- name(arg*: type, ...): description` from an OpenAI function-tool schema."""
    function = schema.get("function", schema)
    parameters = function.get("parameters", {})
    required = set(parameters.get("required", []))
    args = ", ".join(f"{name}{'*' if name in required else ''}: {_type_text(spec)}"
                     for name, spec in parameters.get("properties", {}).items())
    return f"- {function['name']}({args}): {function.get('description', '')}"


def build_system_prompt(tool_schemas: list[dict[str, Any]], workdir: str, project_context: str | None = None,
                        template: str | None = None) -> str:
    """Fill `template` (fields: {tools}, {workdir}, {project_context}) from the tool schemas and IFLOW.md text."""
    context = ""
    if project_context and project_context.strip():
        text = project_context.strip()
        if len(text) > MAX_PROJECT_CONTEXT_CHARS:
            text = text[:MAX_PROJECT_CONTEXT_CHARS] + "\n[... IFLOW.md cut ...]"
        context = f"\n\nProject notes ({PROJECT_FILE}):\n{text}"
    template = template or DEFAULT_TEMPLATE
    try:
        tools = "\n".join(tool_line(schema) for schema in tool_schemas) or "(listed below by the chat template)"
        return template.format(tools=tools, workdir=workdir, project_context=context)
    except (KeyError, IndexError, ValueError) as exc:
        raise ValueError(f"system prompt template is invalid ({exc!r}); allowed fields: {{tools}}, {{workdir}}, "
                         "{project_context}; write literal braces as {{ and }}") from None


async def load_project_context(backend: Any, filename: str = PROJECT_FILE) -> str | None:
    """The workspace's IFLOW.md, or None when there is none."""
    path = posixpath.join(backend.workdir, filename)
    exists = await backend.run(f"test -f {shlex.quote(path)}", timeout=10, session="iflow-tools")
    if exists.exit_code != 0:
        return None
    return (await backend.read_file(path)).decode("utf-8", "replace")
