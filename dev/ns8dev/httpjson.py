"""A JSON request to the api-server stand-in, as tests and scripts make them."""

import json
import urllib.error
import urllib.request


def request(url, method, data=None, token=None, raw=None, headers=None):
    """(HTTP status, JSON body or text) of one request; HTTP errors are returned, not raised."""
    hdrs = {"Content-Type": "application/json", **(headers or {})}
    if token:
        hdrs["Authorization"] = f"Bearer {token}"
    payload = raw if raw is not None else None if data is None else json.dumps(data).encode()
    req = urllib.request.Request(url, method=method, data=payload, headers=hdrs)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            status, text = resp.status, resp.read()
    except urllib.error.HTTPError as err:
        status, text = err.code, err.read()
    try:
        return status, json.loads(text)
    except ValueError:
        return status, text.decode(errors="replace")
