"""How `Encryption` makes nonces: never the same twice under one key, a fork included."""

from __future__ import annotations

import base64
import os
import threading

import pytest

from flowkit import Encryption
from flowkit.encryption import PREFIX


def nonce_of(blob: str) -> bytes:
    """The 12-byte nonce a sealed blob starts its body with."""
    body = blob[len(PREFIX) :].split(":", 1)[1]
    return base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))[:12]


def test_threads_sealing_at_once_never_share_a_nonce() -> None:
    """Four threads sealing 5,000 values each get 20,000 distinct nonces, all opening again."""
    keys = Encryption({"k": Encryption.new_key()}, "k")
    blobs: list[list[str]] = [[] for _ in range(4)]

    def seal_many(out: list[str]) -> None:
        out.extend(keys.seal(str(i)) for i in range(5000))

    threads = [threading.Thread(target=seal_many, args=(out,)) for out in blobs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    every = [blob for out in blobs for blob in out]
    assert len({nonce_of(blob) for blob in every}) == 20_000
    assert sorted(keys.open(b) for b in blobs[0]) == sorted(str(i) for i in range(5000))


def test_two_encryptions_of_one_key_draw_different_random_fields() -> None:
    """Two engines' Encryption objects on the same key start from different nonces."""
    key = Encryption.new_key()
    first, second = Encryption({"k": key}, "k"), Encryption({"k": key}, "k")
    assert nonce_of(first.seal("a"))[:8] != nonce_of(second.seal("a"))[:8]


def test_the_counter_wrapping_draws_a_new_random_field() -> None:
    """At 2**32 values the 4-byte counter would repeat: a new random field is drawn instead."""
    keys = Encryption({"k": Encryption.new_key()}, "k")
    before = nonce_of(keys.seal("a"))
    keys._seed = (keys._seed[0], iter([2**32]))  # type: ignore[assignment]  # the end, reached
    after = nonce_of(keys.seal("b"))
    assert after[:8] != before[:8]
    assert after[8:] == (0).to_bytes(4, "big")
    assert keys.open(keys.seal("c")) == "c"


@pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork is POSIX only")
def test_a_forked_child_does_not_repeat_its_parents_nonces() -> None:
    """A child forked from a process holding an Encryption seals under a new random field."""
    keys = Encryption({"k": Encryption.new_key()}, "k")
    keys.seal("warm")
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: send the nonce of its next value, and leave at once
        os.close(read)
        os.write(write, nonce_of(keys.seal("child")))
        os._exit(0)
    os.close(write)
    child = os.read(read, 12)
    os.close(read)
    os.waitpid(pid, 0)
    parent = nonce_of(keys.seal("parent"))
    assert len(child) == 12
    assert child[:8] != parent[:8]
