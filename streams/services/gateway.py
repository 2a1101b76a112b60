"""Gateway service: the HTTP API on 127.0.0.1:<gateway_port>."""

from __future__ import annotations

import uvicorn

from streams.api_keys import KeyStore, api_keys_file
from streams.gateway import create_app
from streams.kafka import make_codec
from streams.service import ServiceContext
from streams.settings import load_settings


def main() -> None:
    settings = load_settings()
    ctx = ServiceContext("gateway", settings)
    app = create_app(settings, make_codec(settings), KeyStore(api_keys_file(settings)))
    try:
        uvicorn.run(app, host="127.0.0.1", port=settings.gateway_port, log_level="warning")
    finally:
        ctx.close()


if __name__ == "__main__":
    main()
