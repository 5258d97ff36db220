"""The console: a browser app at ``/console`` for the people who run the stack.

Three parts, server-rendered with jinja2 and a little plain JavaScript, every asset
served by this server (no CDN, no Node at run time):

- **Inbox** (:mod:`.inbox_pages`): search escalations, open one (text, findings, why it
  escalated, the trace as a tree), claim, reply, resolve; a corrected label turns the
  packet into a training example for ``slmstack train ... --resume``.
- **Playground** (:mod:`.playground`): run a workflow on a text, see each step.
- **Reports** (:mod:`.reports`): spend beside "all to the LLM", escalation rate,
  latency percentiles, and the reports the CLI wrote.

Behind the API's keys: :class:`ConsoleGate` signs a browser in with a cookie (see
:mod:`.gate`). ``create_app`` mounts it: ``app.include_router(console.router)`` and
``app.add_middleware(ConsoleGate)`` outside the API's auth.
"""

from slmstack.serve.console.common import invalid_address
from slmstack.serve.console.gate import ConsoleGate, is_console
from slmstack.serve.console.routes import router

__all__ = ["ConsoleGate", "invalid_address", "is_console", "router"]
