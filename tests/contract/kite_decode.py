"""Decode Kite binary frames with the public kiteconnect parser, for the Rust cross-check.

Usage: kite_decode.py FRAMES_FILE

FRAMES_FILE holds one frame per line, hex-encoded. For each line this prints one JSON
line: the list of packets `KiteTicker._parse_binary` returns. So that the comparison can be
exact, floats are printed as their repr() strings (Rust parses those to the same double) and
datetimes as Unix seconds (computed in UTC, the inverse of the parser's fromtimestamp).
"""

import json
import os
import sys
import time
from datetime import datetime, timezone

# kiteconnect calls datetime.fromtimestamp (local time); pin the zone so the inverse below
# is exact whatever the machine's zone is.
os.environ["TZ"] = "UTC"
time.tzset()

from kiteconnect import KiteTicker  # noqa: E402  (after the zone is pinned)


def plain(value):
    if isinstance(value, bool) or value is None or isinstance(value, (int, str)):
        return value
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, datetime):
        return int(value.replace(tzinfo=timezone.utc).timestamp())
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    raise TypeError(f"unexpected {type(value).__name__} in a parsed tick: {value!r}")


def main(path):
    # The constructor only builds the URL; nothing connects.
    ticker = KiteTicker("api_key", "access_token")
    with open(path) as frames:
        for line in frames:
            line = line.strip()
            if not line:
                continue
            ticks = ticker._parse_binary(bytes.fromhex(line))
            print(json.dumps(plain(ticks)))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: kite_decode.py FRAMES_FILE")
    main(sys.argv[1])
