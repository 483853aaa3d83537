"""The engine's front door: provision tokens, read tokens, open stores, load configs.

    from engine import Provisioner, load_config
    provisioner = Provisioner(load_config("jitprov.toml"))
    result = provisioner.apply("okta", raw_bytes, allow_samples=True)

Names are imported on first use, so `import engine` stays cheap and free of cycles.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from engine.config import Config, ConfigError, Connection, load_config
    from engine.intake import read_token
    from engine.provision import Provisioner, RulesError
    from engine.result import Result
    from engine.store import Store, StoreError, open_store
    from engine.token import Token, TokenRejected

_EXPORTS = {
    "Config": "engine.config",
    "ConfigError": "engine.config",
    "Connection": "engine.config",
    "load_config": "engine.config",
    "read_token": "engine.intake",
    "Provisioner": "engine.provision",
    "RulesError": "engine.provision",
    "Result": "engine.result",
    "Store": "engine.store",
    "StoreError": "engine.store",
    "open_store": "engine.store",
    "Token": "engine.token",
    "TokenRejected": "engine.token",
}

__all__ = [
    "Config",
    "ConfigError",
    "Connection",
    "Provisioner",
    "Result",
    "RulesError",
    "Store",
    "StoreError",
    "Token",
    "TokenRejected",
    "load_config",
    "open_store",
    "read_token",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'engine' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
