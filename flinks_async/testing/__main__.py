"""``python -m flinks_async.testing --port 8080``: the emulator as a standalone server."""

from ._serve import main

if __name__ == "__main__":
    raise SystemExit(main())
