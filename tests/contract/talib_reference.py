#!/usr/bin/env python3
"""TA-Lib reference values for processors/tests/indicators_talib.rs.

Usage: talib_reference.py REQUEST.json

REQUEST.json holds {"bars": [Bar, ...], "calls": [{"function": "MACD", "params": {...}}, ...]}
where each Bar has the strikeflow_schemas::Bar fields (open, high, low, close, volume, ...).
Each call runs the TA-Lib function of that name on the bar columns it needs, with the given
keyword parameters. Prints one JSON object on stdout:

    {"talib_version": "...", "ta_lib_c_version": "...",
     "results": [[output_0, output_1, ...], ...]}

with one entry per call, each output a list as long as the bars and NaN (TA-Lib's warm-up)
written as null.
"""

import json
import math
import sys

import numpy as np
import talib

# Bar columns each supported TA-Lib function reads, in its positional order.
INPUTS = {
    "SMA": ("close",),
    "EMA": ("close",),
    "WMA": ("close",),
    "RSI": ("close",),
    "MACD": ("close",),
    "BBANDS": ("close",),
    "ATR": ("high", "low", "close"),
    "ADX": ("high", "low", "close"),
    "PLUS_DI": ("high", "low", "close"),
    "MINUS_DI": ("high", "low", "close"),
    "STOCH": ("high", "low", "close"),
    "OBV": ("close", "volume"),
}


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    with open(sys.argv[1], encoding="utf-8") as f:
        request = json.load(f)
    bars = request["bars"]
    columns = {
        name: np.array([float(bar[name]) for bar in bars], dtype=np.float64)
        for name in ("open", "high", "low", "close", "volume")
    }
    results = []
    for call in request["calls"]:
        name = call["function"]
        if name not in INPUTS:
            print(f"unsupported TA-Lib function {name!r}", file=sys.stderr)
            return 2
        out = getattr(talib, name)(
            *(columns[c] for c in INPUTS[name]), **call.get("params", {})
        )
        outputs = out if isinstance(out, tuple) else (out,)
        results.append(
            [[None if math.isnan(v) else v for v in o.tolist()] for o in outputs]
        )
    c_version = talib.__ta_version__
    if isinstance(c_version, bytes):
        c_version = c_version.decode()
    json.dump(
        {
            "talib_version": talib.__version__,
            "ta_lib_c_version": c_version,
            "results": results,
        },
        sys.stdout,
        allow_nan=False,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
