#!/usr/bin/env python3
"""Interoperability check: the reference Kinto and kinto-rs serve ONE PostgreSQL database.

Usage: interop.py --ref URL --rs URL

Both servers must use the same database and the same `userid_hmac_secret` (bench/interop.sh
starts kinto-rs that way next to ../shared/ref/reference-kinto.sh). Data written through one
server (bucket, collection, group, records, a tombstone, permissions) is read through the other,
and the JSON bodies, ETags and plural lists (with tombstones via _since) must be identical; then
the same the other way round. Prints one line per check and exits non-zero on a difference.
"""
import base64
import json
import sys
import time
import urllib.error
import urllib.request

AUTH = "Basic " + base64.b64encode(b"interop:interop-pw").decode()
failures = 0


def call(base, method, path, body=None, headers=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(base + path, data=data, method=method)
    req.add_header("Authorization", AUTH)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    for k, v in (headers or {}).items():
        req.add_header(k, v)
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, dict(resp.headers), json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), json.loads(e.read() or b"null")


def check(what, ok, detail=""):
    global failures
    print(("ok   " if ok else "FAIL ") + what + ("" if ok else f": {detail}"))
    if not ok:
        failures += 1


def write_fixture(base, bid):
    for method, path, body in [
        ("PUT", f"/buckets/{bid}", {"data": {"title": "interop"}}),
        ("PUT", f"/buckets/{bid}/groups/g1", {"data": {"members": ["account:x", "basicauth:y"]}}),
        ("PUT", f"/buckets/{bid}/collections/c1", {"data": {"cache_expires": 10},
                                                     "permissions": {"read": ["system.Everyone"]}}),
        ("PUT", f"/buckets/{bid}/collections/c1/records/r1", {"data": {"n": 1, "tags": ["a", "b"],
                                                                        "nested": {"x": "é"}}}),
        ("PUT", f"/buckets/{bid}/collections/c1/records/r2", {"data": {"n": 2}}),
        ("PUT", f"/buckets/{bid}/collections/c1/records/r3", {"data": {"n": 3}}),
        ("PATCH", f"/buckets/{bid}/collections/c1/records/r2", {"data": {"m": True}}),
        ("DELETE", f"/buckets/{bid}/collections/c1/records/r3", None),
    ]:
        status, _, answer = call(base, method, path, body)
        if status >= 300:
            raise SystemExit(f"{method} {path} on {base} answered {status}: {answer}")


def compare(writer, reader, bid):
    paths = [f"/buckets/{bid}", f"/buckets/{bid}/groups/g1", f"/buckets/{bid}/collections/c1",
             f"/buckets/{bid}/collections/c1/records/r1", f"/buckets/{bid}/collections/c1/records/r2",
             f"/buckets/{bid}/collections/c1/records/r3",
             f"/buckets/{bid}/collections/c1/records?_sort=n",
             f"/buckets/{bid}/collections/c1/records?_since=0&_sort=-last_modified",
             f"/buckets/{bid}/collections/c1/records?n=2",
             f"/buckets/{bid}/collections"]
    for path in paths:
        s1, h1, b1 = call(writer, "GET", path)
        s2, h2, b2 = call(reader, "GET", path)
        check(f"GET {path}: status {s1}", s1 == s2, f"{s1} vs {s2}")
        check(f"GET {path}: body", b1 == b2, f"\n  writer {b1}\n  reader {b2}")
        e1 = h1.get("ETag") or h1.get("Etag")
        e2 = h2.get("ETag") or h2.get("Etag")
        check(f"GET {path}: ETag {e1}", e1 == e2, f"{e1} vs {e2}")


def main(argv):
    args = dict(zip(argv[::2], argv[1::2]))
    ref, rs = args["--ref"].rstrip("/"), args["--rs"].rstrip("/")
    stamp = int(time.time())
    for writer, reader, name in [(ref, rs, "kinto-to-rs"), (rs, ref, "rs-to-kinto")]:
        bid = f"interop-{name}-{stamp}"
        print(f"== written by {writer}, read by {reader} (bucket {bid})")
        write_fixture(writer, bid)
        compare(writer, reader, bid)
        status, _, _ = call(reader, "DELETE", f"/buckets/{bid}")
        check(f"DELETE /buckets/{bid} through the reader", status == 200, str(status))
        s1, _, _ = call(writer, "GET", f"/buckets/{bid}/collections/c1/records/r1")
        check("the cascade is seen by the writer", s1 in (403, 404), str(s1))
    print(f"{failures} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
