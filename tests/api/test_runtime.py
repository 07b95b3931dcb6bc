"""Process-level settings the server applies when it starts."""

from __future__ import annotations

import gc
from pathlib import Path

from fastapi.testclient import TestClient

from leaktrace.api.app import YOUNG_GENERATION_THRESHOLD, create_app
from leaktrace.config import Settings


def test_startup_keeps_garbage_collection_off_requests(tmp_path: Path) -> None:
    before = gc.get_threshold()
    gc.set_threshold(700, *before[1:])
    gc.unfreeze()
    settings = Settings(data_dir=tmp_path / "var", database_url=None, queue_url=None, public_url="http://test", secret_key=None)
    try:
        app = create_app(settings)
        assert gc.get_threshold()[0] == 700 and gc.get_freeze_count() == 0  # building the app changes nothing
        with TestClient(app):
            assert gc.get_threshold() == (YOUNG_GENERATION_THRESHOLD, *before[1:])
            assert gc.get_freeze_count() > 10_000  # the imported libraries, frozen out of collections
    finally:
        gc.set_threshold(*before)
