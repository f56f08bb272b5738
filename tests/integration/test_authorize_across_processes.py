"""Authorizations of one session from two processes take turns: the provider is called once."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from payment.bootstrap import make_payment_module

AUTHORIZER = Path(__file__).with_name("authorize_process.py")


def _session(database_url: str) -> str:
    """A collection of 40 USD with one pp_test session, made by this process."""
    module = make_payment_module(database_url)
    try:
        collection = module.create_payment_collection("usd", "40")
        return module.create_payment_session(collection.id, "pp_test", "usd", "40").id
    finally:
        module.close()


def test_two_processes_authorizing_one_session_call_the_provider_once(
    database_url: str, tmp_path: Path
) -> None:
    """Two processes authorize one session at once: one provider call, both get its payment."""
    session_id = _session(database_url)
    calls, start = tmp_path / "calls.txt", tmp_path / "start"
    args = [sys.executable, str(AUTHORIZER), database_url, session_id, str(calls), str(start)]
    children = [
        subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    start.touch()
    outputs = [child.communicate(timeout=60) for child in children]
    assert [child.returncode for child in children] == [0, 0], [err for _, err in outputs]
    assert len(calls.read_text().splitlines()) == 1
    payment_ids = {out.strip() for out, _ in outputs}
    assert len(payment_ids) == 1
    assert payment_ids.pop().startswith("pay_")
