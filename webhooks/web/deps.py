"""What routes are handed (FastAPI's ``Depends``): the application's System and its
stores, so that no route reaches for a store of its own."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from ..settings import Settings
from ..storage.deliveries import DeliveryStore
from ..storage.endpoints import EndpointStore
from ..storage.sessions import SessionStore
from ..storage.tenants import TenantStore
from ..system import System

__all__ = [
    "Deliveries",
    "Endpoints",
    "Sessions",
    "SettingsDep",
    "SystemDep",
    "Tenants",
    "system_of",
]


def system_of(request: Request) -> System:
    """The System the application serves (``create_app(system)``)."""
    system: System = request.app.state.system
    return system


SystemDep = Annotated[System, Depends(system_of)]


def _settings(system: SystemDep) -> Settings:
    return system.settings


def _deliveries(system: SystemDep) -> DeliveryStore:
    return system.deliveries


def _endpoints(system: SystemDep) -> EndpointStore:
    return system.endpoints


def _tenants(system: SystemDep) -> TenantStore:
    return system.tenants


def _sessions(system: SystemDep) -> SessionStore:
    return system.sessions


SettingsDep = Annotated[Settings, Depends(_settings)]
Deliveries = Annotated[DeliveryStore, Depends(_deliveries)]
Endpoints = Annotated[EndpointStore, Depends(_endpoints)]
Tenants = Annotated[TenantStore, Depends(_tenants)]
Sessions = Annotated[SessionStore, Depends(_sessions)]
