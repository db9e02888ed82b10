"""kopf settings shared by every Trellis operator.

Each operator is its own process with its own finalizer and annotation prefix, so two operators
touching one object (for instance a BareMetalHost and the DHCPReservations it owns) never
overwrite each other's kopf bookkeeping.
"""

from __future__ import annotations

import logging
import os

import kopf

from trellis import GROUP


def configure(settings: kopf.OperatorSettings, operator: str) -> None:
    prefix = f"{operator}.{GROUP}"
    settings.persistence.finalizer = f"{prefix}/finalizer"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=prefix)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=prefix, key="last-handled-configuration"
    )
    # Events come from explicit kopf.info/warn/event calls with a reason; kopf's own per-handler
    # log lines would add one Event per object change and flood the API.
    settings.posting.loggers = False
    settings.posting.level = logging.INFO
    settings.watching.server_timeout = 60
    settings.watching.client_timeout = 90
    settings.networking.error_backoffs = [1, 2, 5, 10]
    if os.environ.get("TRELLIS_TEST_MODE"):
        # Short timeouts so tests shut operators down quickly and retry soon after failures.
        settings.watching.server_timeout = 10
        settings.watching.client_timeout = 15
        settings.execution.default_backoff = 1
        settings.networking.error_backoffs = [0.5, 1, 1]
