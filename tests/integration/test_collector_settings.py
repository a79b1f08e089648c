"""The server's collector settings (config.gc_threshold) in a process that runs the app:
set while it serves, and the interpreter's own back once it has stopped, on both stores."""

from __future__ import annotations

import asyncio
import gc
from pathlib import Path

from api.config import Config
from api.http.app import create_app


def test_the_thresholds_and_the_clock_last_as_long_as_the_app(
    store_url: str, tmp_path: Path
) -> None:
    before, callbacks = gc.get_threshold(), list(gc.callbacks)

    async def main() -> None:
        config = Config(database_url=store_url, data_dir=tmp_path, gc_threshold=(1234, 5, 6))
        app = create_app(config)
        async with app.router.lifespan_context(app):
            assert gc.get_threshold() == (1234, 5, 6)
            clock = app.state.services.metrics.collector
            assert clock in gc.callbacks
            gc.collect(0)
            assert clock.collections[0] >= 1  # the clock counts the collections
        assert gc.get_threshold() == before
        assert clock not in gc.callbacks

    asyncio.run(main())
    assert gc.get_threshold() == before and gc.callbacks == callbacks
