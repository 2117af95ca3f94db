"""/api/docs: the REST API's routes as one HTML page drawn on the server from its OpenAPI schema, with no script and
nothing fetched from elsewhere (comply runs offline; FastAPI's Swagger UI loads its code from a CDN). The schema is
at /api/openapi.json for tools that draw or generate from it (Swagger UI, Postman, client generators)."""

from __future__ import annotations

import re
from html import escape

STYLE = """body { font-family: ui-sans-serif, system-ui, sans-serif; max-width: 60rem; margin: 2rem auto; padding: 0 1rem;
       line-height: 1.45; }
code, .path { font-family: ui-monospace, monospace; }
.route { border: 1px solid #ccd; border-radius: 6px; padding: 0.6rem 1rem; margin: 1rem 0; }
.method { font-weight: 700; padding: 0 0.4rem; border-radius: 4px; background: #e6ecf5; }
table { border-collapse: collapse; margin: 0.4rem 0; } td, th { border: 1px solid #dde; padding: 2px 8px;
       text-align: left; vertical-align: top; }"""


def docs_html(schema: dict) -> str:
    """The whole page: title, description, then each route with its parameters, body and responses."""
    info = schema.get("info", {})
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{escape(info.get('title', 'API'))}</title>"
             f"<style>{STYLE}</style></head><body><h1>{escape(info.get('title', 'API'))} "
             f"<small>{escape(str(info.get('version', '')))}</small></h1>",
             f"<p>{_text(info.get('description', ''))}</p><p>The schema: <a href='openapi.json'>openapi.json</a>."
             "</p>"]
    components = schema.get("components", {}).get("schemas", {})
    for path, methods in schema.get("paths", {}).items():
        for method, route in methods.items():
            parts.append(_route(path, method, route, components))
    parts.append("<h2>Shapes</h2>")
    for name, component in components.items():
        parts.append(f"<h3 id='{escape(name)}'>{escape(name)}</h3><p>{escape(component.get('description', ''))}</p>"
                     + _fields(component, components))
    parts.append("</body></html>")
    return "\n".join(parts)


def _route(path: str, method: str, route: dict, components: dict) -> str:
    token = "Bearer token" if route.get("security") else "no token"
    out = [f"<div class='route' id='{escape(method)}-{escape(path)}'><h3><span class='method'>{method.upper()}"
           f"</span> <span class='path'>{escape(path)}</span></h3>",
           f"<p><b>{_text(route.get('summary', ''))}</b> ({token})</p>",
           f"<p>{_text(route.get('description', ''))}</p>"]
    params = route.get("parameters", [])
    if params:
        rows = [(p["name"], p.get("in", ""), _type(p.get("schema", {}), components), p.get("required", False),
                 p.get("description", "")) for p in params]
        out.append(_table(("parameter", "in", "type", "required", "meaning"), rows))
    for kind, body in route.get("requestBody", {}).get("content", {}).items():
        out.append(f"<p>Body: <code>{escape(kind)}</code></p>")
        out.append(_fields(_resolve(body.get("schema", {}), components), components))
    codes = ", ".join(f"{escape(code)} {escape(r.get('description', ''))}" for code, r in route.get("responses",
                                                                                                    {}).items())
    out.append(f"<p>Responses: {codes}</p></div>")
    return "\n".join(out)


def _fields(schema: dict, components: dict) -> str:
    required = set(schema.get("required", []))
    rows = [(name, "body", _type(field, components), name in required, field.get("description", ""))
            for name, field in schema.get("properties", {}).items()]
    return _table(("field", "in", "type", "required", "meaning"), rows) if rows else ""


def _text(markdown: str) -> str:
    """Escaped text with its `code` spans as <code>."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", escape(markdown))


def _table(head: tuple, rows: list[tuple]) -> str:
    cells = "".join(f"<th>{escape(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{escape('yes' if v is True else '' if v is False else str(v))}</td>"
                                    for v in row) + "</tr>" for row in rows)
    return f"<table><tr>{cells}</tr>{body}</table>"


def _resolve(schema: dict, components: dict) -> dict:
    ref = schema.get("$ref", "")
    return components.get(ref.rsplit("/", 1)[-1], {}) if ref else schema


def _type(schema: dict, components: dict) -> str:
    """'string', 'integer or null', 'array of string', 'ChatMessage' ... for a JSON schema."""
    if "$ref" in schema:
        return schema["$ref"].rsplit("/", 1)[-1]
    if "anyOf" in schema:
        return " or ".join(_type(s, components) for s in schema["anyOf"])
    if schema.get("type") == "array":
        return f"array of {_type(schema.get('items', {}), components)}"
    return str(schema.get("format") or schema.get("type") or "any")
