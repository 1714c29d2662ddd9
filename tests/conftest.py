"""Shared test helpers: where ../shared/data is, and skipping cleanly without it."""
import os

import pytest
import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_DATA = os.environ.get("HYPERZSL_SHARED_DATA",
                             os.path.join(os.path.dirname(REPO), "shared", "data"))


def shared_path(*parts: str) -> str:
    """Path under ../shared/data, or skip the test with a message naming what is missing."""
    path = os.path.join(SHARED_DATA, *parts)
    if not os.path.exists(path):
        pytest.skip(f"real data not found at {path} (set HYPERZSL_SHARED_DATA to the "
                    f"shared/data folder to run this test)")
    return path


@pytest.fixture(autouse=True)
def _single_thread():
    """Tests are small; one thread avoids oversubscribing CI's 2 cores."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
