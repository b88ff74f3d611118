#!/usr/bin/env python3
"""Independent reference for strikeflow's option pricing: py_vollib (Let's Be Rational).

Usage: vollib_reference.py CASES.json

CASES.json is written by processors/tests/pricing_vollib.rs:
    {"cases": [{"id": 0, "model": "black" | "black_scholes", "flag": "c" | "p",
                "underlying": F or S, "strike": K, "t": T, "r": r,
                "price": discounted premium, "sigma": volatility for the Greeks}, ...]}

Prints one JSON object to stdout:
    {"versions": {...},
     "results": [{"id", "iv" (float or null), "iv_error" (null, "below_intrinsic",
                  "above_maximum" or another exception name), "price", "delta", "gamma",
                  "theta", "vega", "rho"}, ...]}

Models and units are py_vollib's:
  * "black": py_vollib.black (Black-76 on the forward F; prices discounted by e^{-rT};
    implied_volatility(discounted_price, F, K, r, t, flag)).
  * "black_scholes": py_vollib.black_scholes (spot S, forward S e^{rT};
    implied_volatility(price, S, K, t, r, flag)).
  * Greeks from the modules' greeks.analytical: delta, gamma per unit of the underlying,
    theta per calendar day (annual / 365), vega and rho per 1 point (x 0.01).
"""

import json
import math
import sys
import warnings
from importlib import metadata

# py_vollib 1.0.12 is a compatibility alias of `vollib` and warns on import.
warnings.filterwarnings("ignore", category=DeprecationWarning)

import py_vollib.black as black  # noqa: E402
import py_vollib.black.greeks.analytical as black_greeks  # noqa: E402
import py_vollib.black.implied_volatility as black_iv  # noqa: E402
import py_vollib.black_scholes as bs  # noqa: E402
import py_vollib.black_scholes.greeks.analytical as bs_greeks  # noqa: E402
import py_vollib.black_scholes.implied_volatility as bs_iv  # noqa: E402


def version(dist):
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def iv_of(case):
    """Implied volatility, or (None, reason) when vollib refuses the price."""
    flag, u, k, t, r, p = (case[f] for f in ("flag", "underlying", "strike", "t", "r", "price"))
    try:
        if case["model"] == "black":
            sigma = black_iv.implied_volatility(p, u, k, r, t, flag)
        else:
            sigma = bs_iv.implied_volatility(p, u, k, t, r, flag)
    except Exception as e:  # vollib signals "no IV" with exceptions
        name = type(e).__name__
        if "Below" in name:
            return None, "below_intrinsic"
        if "Above" in name:
            return None, "above_maximum"
        return None, name
    return finite(sigma), None


def finite(x):
    """A float for JSON, or None for NaN/inf (which JSON cannot carry)."""
    x = float(x)
    return x if math.isfinite(x) else None


def greeks_of(case):
    flag, u, k, t, r, s = (case[f] for f in ("flag", "underlying", "strike", "t", "r", "sigma"))
    if case["model"] == "black":
        price, g = black.black(flag, u, k, t, r, s), black_greeks
    else:
        price, g = bs.black_scholes(flag, u, k, t, r, s), bs_greeks
    return {
        "price": finite(price),
        "delta": finite(g.delta(flag, u, k, t, r, s)),
        "gamma": finite(g.gamma(flag, u, k, t, r, s)),
        "theta": finite(g.theta(flag, u, k, t, r, s)),
        "vega": finite(g.vega(flag, u, k, t, r, s)),
        "rho": finite(g.rho(flag, u, k, t, r, s)),
    }


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: vollib_reference.py CASES.json")
    with open(sys.argv[1], encoding="utf-8") as f:
        cases = json.load(f)["cases"]
    results = []
    for case in cases:
        if case["model"] not in ("black", "black_scholes") or case["flag"] not in ("c", "p"):
            sys.exit(f"bad case {case!r}")
        iv, err = iv_of(case)
        results.append({"id": case["id"], "iv": iv, "iv_error": err, **greeks_of(case)})
    versions = {
        "python": sys.version.split()[0],
        "py_vollib": version("py_vollib"),
        "vollib": version("vollib"),
        "lets_be_rational": version("lets_be_rational"),
        "numpy": version("numpy"),
    }
    json.dump({"versions": versions, "results": results}, sys.stdout, allow_nan=False)


if __name__ == "__main__":
    main()
