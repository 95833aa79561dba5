"""The controller's gRPC side: agent streams, ingest, admin API, directives, preflight.

Others call:
- `Controller(ControllerSettings(...))` with `await start()` / `await stop()` (the process);
- `FleetService.send_directive(node, directive) -> directive_id`,
  `await FleetService.wait_directive(directive_id, timeout_s) -> DirectiveOutcome`,
  `await FleetService.call_directive(node, directive, timeout_s)`,
  `FleetService.add_listener(cb)` / `add_transition_listener(cb)`,
  `await FleetService.apply_event(node, NodeEvent.ALLOCATED, cause=..., actor=...)`;
- `Controller(settings, extend=lambda service: AdminExtensions(runs=..., burnin=..., stop=...))`
  to serve the run and burn-in RPCs of FleetAdmin (authenticated by the admin servicer first).
"""

from .admin import AdminExtensions, BurninRpcs, RunRpcs
from .app import Controller, ControllerSettings, split_host_port
from .directives import DirectiveOutcome, NotConnected
from .preflight import PreflightSettings
from .security import OperatorTokens, TlsFiles
from .service import Delivered, FleetService, ServiceSettings, UnknownNode
from .streams import DirectiveBacklog

__all__ = [
    "AdminExtensions",
    "BurninRpcs",
    "Controller",
    "ControllerSettings",
    "Delivered",
    "DirectiveBacklog",
    "DirectiveOutcome",
    "FleetService",
    "NotConnected",
    "OperatorTokens",
    "PreflightSettings",
    "RunRpcs",
    "ServiceSettings",
    "TlsFiles",
    "UnknownNode",
    "split_host_port",
]
