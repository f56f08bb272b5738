"""A process that authorizes one payment session once a start file appears.

Usage: python authorize_process.py DB_URL SESSION_ID CALLS_FILE START_FILE

Its gateway (id ``pp_test``) appends a line to CALLS_FILE on every authorization, then takes
half a second to answer, so a second process arrives while the first is inside the call.
It prints the resulting payment's id.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

from payment import ProviderInput, ProviderOutput, ProviderStatus, SystemProvider, TestProvider
from payment.bootstrap import make_payment_module


class CountingGateway:
    """Authorizes everything, leaving a line in a file shared by the processes per call."""

    id = "pp_test"

    def __init__(self, calls_file: str) -> None:
        self._calls_file = calls_file
        self._inner = TestProvider()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def authorize_payment(self, payment: ProviderInput) -> ProviderOutput:
        """Record the call (with its process id), wait, then authorize."""
        with open(self._calls_file, "a") as calls:
            calls.write(f"{os.getpid()} {payment.context.idempotency_key}\n")
        time.sleep(0.5)
        return ProviderOutput(status=ProviderStatus.AUTHORIZED)


def main(database_url: str, session_id: str, calls_file: str, start_file: str) -> None:
    """Wait for the start file, authorize the session, print the payment id."""
    gateway = CountingGateway(calls_file)
    module = make_payment_module(
        database_url, providers=[SystemProvider(), gateway], create_schema=False
    )
    try:
        deadline = time.monotonic() + 30
        while not os.path.exists(start_file) and time.monotonic() < deadline:
            time.sleep(0.005)
        payment = module.authorize_payment_session(session_id)
        print(payment.id if payment is not None else "none")
    finally:
        module.close()


if __name__ == "__main__":
    main(*sys.argv[1:5])
