"""The option-chain summary line both example consumers print, from a decoded
strikeflow.ChainAnalytics record (fields as in schemas/avro/chain.avsc; the logical types
arrive as datetime.date / datetime.datetime, optional fields as None)."""


def fmt(value, spec=".2f", suffix=""):
    """A number, or '-' when the record has none (e.g. no IV before the first quotes)."""
    return "-" if value is None else f"{value:{spec}}{suffix}"


def summary(chain):
    """One line: chain, time, reference, ATM, PCR, max pain, ATM IV, straddle."""
    return (
        f"{chain['underlying']} {chain['expiry']:%Y-%m-%d} "
        f"{chain['ts']:%H:%M:%S}Z{' close' if chain['minute_close'] else ''}  "
        f"ref {chain['reference_price']:.2f} ({chain['reference_kind'].lower()})  "
        f"ATM {chain['atm_strike']:.0f}  PCR(OI) {fmt(chain['pcr_oi'])}  "
        f"max pain {fmt(chain['max_pain'], '.0f')}  ATM IV {fmt(chain['atm_iv'] and chain['atm_iv'] * 100, '.2f', '%')}  "
        f"straddle {fmt(chain['atm_straddle'])}  OI CE/PE {chain['total_ce_oi']}/{chain['total_pe_oi']}"
    )
