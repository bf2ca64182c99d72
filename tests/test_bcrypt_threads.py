"""The bcrypt thread pool leaves a core to the event loops (benchmark scenario 5)."""

from __future__ import annotations

import pytest

from chat_api.security import hashing_threads


@pytest.mark.no_store
@pytest.mark.parametrize(
    ("cores", "workers", "threads"),
    [(2, 1, 1), (4, 1, 3), (8, 1, 7), (8, 2, 3), (4, 4, 1), (1, 1, 1), (2, 4, 1)],
)
def test_bcrypt_threads_leave_one_core_to_the_event_loops(cores: int, workers: int, threads: int) -> None:
    assert hashing_threads(cores, workers) == threads

