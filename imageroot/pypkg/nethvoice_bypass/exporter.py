# SPDX-License-Identifier: GPL-3.0-or-later
"""The metrics exporter (<MODULE_ID>-exporter.service): metrics.prom, as the last
self-check wrote it, on the node's VPN address and the module's TCP_PORT, at a path
nobody guesses (METRICS_PATH); anything else is 404."""

import os

from .metrics import METRICS_FILE

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def make_app(state_dir, path):
    from aiohttp import web

    async def metrics(_request):
        try:
            with open(os.path.join(state_dir, METRICS_FILE), "rb") as f:
                body = f.read()
        except FileNotFoundError:
            return web.Response(status=503, text="no self-check has run yet\n")
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})

    app = web.Application()
    app.router.add_get(path, metrics)
    return app


def main():
    from aiohttp import web

    env = os.environ
    web.run_app(make_app(env.get("AGENT_STATE_DIR") or os.getcwd(), env["METRICS_PATH"]),
                host=env["METRICS_ADDRESS"], port=int(env["TCP_PORT"]), access_log=None, print=None)
