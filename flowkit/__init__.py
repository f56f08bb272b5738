"""flowkit: saga/step workflows with exact compensation and durable checkpoints."""

from flowkit.container import Registry, Scope
from flowkit.exceptions import DefinitionError, ServiceNotFound

__all__ = ["DefinitionError", "Registry", "Scope", "ServiceNotFound"]
