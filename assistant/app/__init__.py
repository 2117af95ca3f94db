"""The edges of comply: the actions every door calls (services, actions), who may call them (users, tokens,
sessions), what they leave behind (audit, conversations, monitoring), and the three doors: `cli/` (the `comply`
command), `ui/` (the browser app) and `api/` (the REST and OpenAI-compatible API). Nothing below this package
imports it (an import-linter contract in pyproject.toml)."""
