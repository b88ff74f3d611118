//! Underlyings, expiries, instrument search and lookup: the instrument master
//! (`instruments`, the latest definition per token) and its history
//! (`instrument_history`, every contract ever listed).

use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::Json;
use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;
use tokio_postgres::types::Type;
use tokio_postgres::Row;

use super::col;
use crate::db::Sql;
use crate::error::Problem;
use crate::openapi;
use crate::params::{self, Params};
use crate::server::App;

/// One underlying and what is listed on it.
#[derive(Debug, Serialize)]
pub(crate) struct Underlying {
    name: String,
    /// The index's tradingsymbol (`NIFTY 50`), when the master lists it.
    spot_symbol: Option<String>,
    spot_token: Option<i64>,
    futures: i64,
    options: i64,
    expiries: i64,
    first_expiry: Option<NaiveDate>,
    last_expiry: Option<NaiveDate>,
}

#[derive(Debug, Serialize)]
pub(crate) struct Underlyings {
    underlyings: Vec<Underlying>,
}

const UNDERLYINGS: Sql = Sql {
    name: "underlyings",
    text: "SELECT name,
       min(tradingsymbol) FILTER (WHERE instrument_type = 'EQ') AS spot_symbol,
       min(instrument_token) FILTER (WHERE instrument_type = 'EQ') AS spot_token,
       count(*) FILTER (WHERE instrument_type = 'FUT') AS futures,
       count(*) FILTER (WHERE instrument_type IN ('CE', 'PE')) AS options,
       count(DISTINCT expiry) AS expiries,
       min(expiry) AS first_expiry,
       max(expiry) AS last_expiry
FROM instruments
GROUP BY name
ORDER BY name",
    types: &[],
};

/// `GET /api/v1/underlyings`.
pub(crate) async fn underlyings(
    State(app): State<Arc<App>>,
    RawQuery(query): RawQuery,
) -> Result<Json<Underlyings>, Problem> {
    Params::strict(query.as_deref(), openapi::UNDERLYINGS.params)?;
    let rows = app.db.query(&UNDERLYINGS, &[]).await?;
    let underlyings = rows
        .iter()
        .map(|row| {
            Ok(Underlying {
                name: col(row, "name")?,
                spot_symbol: col(row, "spot_symbol")?,
                spot_token: col(row, "spot_token")?,
                futures: col(row, "futures")?,
                options: col(row, "options")?,
                expiries: col(row, "expiries")?,
                first_expiry: col(row, "first_expiry")?,
                last_expiry: col(row, "last_expiry")?,
            })
        })
        .collect::<Result<_, Problem>>()?;
    Ok(Json(Underlyings { underlyings }))
}

/// One expiry of an underlying.
#[derive(Debug, Serialize)]
pub(crate) struct Expiry {
    expiry: NaiveDate,
    /// Before today's date in IST.
    expired: bool,
    futures: i64,
    options: i64,
    strikes: i64,
    min_strike: Option<f64>,
    max_strike: Option<f64>,
    lot_size: Option<i32>,
}

#[derive(Debug, Serialize)]
pub(crate) struct Expiries {
    underlying: String,
    expiries: Vec<Expiry>,
}

const EXPIRIES: Sql = Sql {
    name: "expiries",
    text: "SELECT k.known, e.expiry, e.futures, e.options, e.strikes, e.min_strike, e.max_strike,
       e.lot_size, e.expiry < (now() AT TIME ZONE 'Asia/Kolkata')::date AS expired
FROM (SELECT EXISTS (SELECT 1 FROM instrument_history WHERE name = $1) AS known) k
LEFT JOIN (
    SELECT expiry,
           count(*) FILTER (WHERE instrument_type = 'FUT') AS futures,
           count(*) FILTER (WHERE instrument_type IN ('CE', 'PE')) AS options,
           count(DISTINCT strike) FILTER (WHERE instrument_type IN ('CE', 'PE')) AS strikes,
           min(strike) FILTER (WHERE instrument_type IN ('CE', 'PE')) AS min_strike,
           max(strike) FILTER (WHERE instrument_type IN ('CE', 'PE')) AS max_strike,
           max(lot_size) AS lot_size
    FROM instrument_history
    WHERE name = $1 AND expiry IS NOT NULL
    GROUP BY expiry
) e ON true
ORDER BY e.expiry",
    types: &[Type::TEXT],
};

/// `GET /api/v1/expiries?underlying=`: every expiry ever listed on the underlying (expired
/// ones too: their chains stay queryable), in date order.
pub(crate) async fn expiries(
    State(app): State<Arc<App>>,
    RawQuery(query): RawQuery,
) -> Result<Json<Expiries>, Problem> {
    let params = Params::strict(query.as_deref(), openapi::EXPIRIES.params)?;
    let underlying = params.need("underlying", params::underlying)?;
    let rows = app.db.query(&EXPIRIES, &[&underlying]).await?;
    if !super::known(&rows)? {
        return Err(unknown_underlying(&underlying));
    }
    let mut expiries = Vec::with_capacity(rows.len());
    for row in &rows {
        let Some(expiry) = col::<Option<NaiveDate>>(row, "expiry")? else {
            continue;
        };
        expiries.push(Expiry {
            expiry,
            expired: col(row, "expired")?,
            futures: col(row, "futures")?,
            options: col(row, "options")?,
            strikes: col(row, "strikes")?,
            min_strike: col(row, "min_strike")?,
            max_strike: col(row, "max_strike")?,
            lot_size: col(row, "lot_size")?,
        });
    }
    Ok(Json(Expiries {
        underlying,
        expiries,
    }))
}

pub(crate) fn unknown_underlying(underlying: &str) -> Problem {
    Problem::unknown(
        "unknown_underlying",
        "underlying",
        format!("no instrument of underlying {underlying:?} is stored"),
    )
}

/// An instrument's latest definition, as the Kite master gives it.
#[derive(Debug, Serialize)]
pub(crate) struct Instrument {
    instrument_token: i64,
    exchange_token: i64,
    tradingsymbol: String,
    /// The underlying (`NIFTY`), Kite's `name`.
    name: String,
    last_price: f64,
    expiry: Option<NaiveDate>,
    strike: f64,
    tick_size: f64,
    lot_size: i32,
    instrument_type: String,
    segment: String,
    exchange: String,
    updated_at: DateTime<Utc>,
}

impl Instrument {
    fn from_row(row: &Row) -> Result<Self, Problem> {
        Ok(Self {
            instrument_token: col(row, "instrument_token")?,
            exchange_token: col(row, "exchange_token")?,
            tradingsymbol: col(row, "tradingsymbol")?,
            name: col(row, "name")?,
            last_price: col(row, "last_price")?,
            expiry: col(row, "expiry")?,
            strike: col(row, "strike")?,
            tick_size: col(row, "tick_size")?,
            lot_size: col(row, "lot_size")?,
            instrument_type: col(row, "instrument_type")?,
            segment: col(row, "segment")?,
            exchange: col(row, "exchange")?,
            updated_at: col(row, "updated_at")?,
        })
    }
}

#[derive(Debug, Serialize)]
pub(crate) struct InstrumentPage {
    instruments: Vec<Instrument>,
    /// Pass as `cursor` for the next page; null on the last.
    next_cursor: Option<String>,
}

const SEARCH: Sql = Sql {
    name: "instruments",
    text:
        "SELECT instrument_token, exchange_token, tradingsymbol, name, last_price, expiry, strike,
       tick_size, lot_size, instrument_type, segment, exchange, updated_at
FROM instruments
WHERE ($1::text IS NULL OR starts_with(tradingsymbol, $1))
  AND ($2::text IS NULL OR instrument_type = $2)
  AND ($3::date IS NULL OR expiry = $3)
  AND ($4::float8 IS NULL OR strike = $4)
  AND ($5::text IS NULL OR name = $5)
  AND ($6::text IS NULL OR (tradingsymbol, instrument_token) > ($6, $7))
ORDER BY tradingsymbol, instrument_token
LIMIT $8",
    types: &[
        Type::TEXT,
        Type::TEXT,
        Type::DATE,
        Type::FLOAT8,
        Type::TEXT,
        Type::TEXT,
        Type::INT8,
        Type::INT8,
    ],
};

/// Default page size of the instrument search.
const DEFAULT_PAGE: usize = 100;

/// `GET /api/v1/instruments?q=&type=&expiry=&strike=&underlying=&limit=&cursor=`: the
/// master filtered by tradingsymbol prefix, type, expiry, strike and underlying, in
/// tradingsymbol order, paged by an opaque cursor.
pub(crate) async fn search(
    State(app): State<Arc<App>>,
    RawQuery(query): RawQuery,
) -> Result<Json<InstrumentPage>, Problem> {
    let params = Params::strict(query.as_deref(), openapi::INSTRUMENTS.params)?;
    let prefix = params.get("q", params::symbol)?;
    let kind = params.get("type", |raw| {
        params::one_of(raw, &["CE", "PE", "FUT", "EQ"]).map(str::to_owned)
    })?;
    let expiry = params.get("expiry", params::date)?;
    let strike = params.get("strike", params::strike)?;
    let underlying = params.get("underlying", params::underlying)?;
    let max = app.settings.max_page;
    let limit = params
        .get("limit", |raw| params::count(raw, 1, max))?
        .unwrap_or(DEFAULT_PAGE.min(max));
    let cursor = params.get("cursor", Cursor::parse)?;
    let (after_symbol, after_token) = match cursor {
        Some(Cursor { symbol, token }) => (Some(symbol), Some(token)),
        None => (None, None),
    };
    let rows = app
        .db
        .query(
            &SEARCH,
            &[
                &prefix,
                &kind,
                &expiry,
                &strike,
                &underlying,
                &after_symbol,
                &after_token,
                &super::fetch_limit(limit),
            ],
        )
        .await?;
    let mut instruments = rows
        .iter()
        .map(Instrument::from_row)
        .collect::<Result<Vec<_>, _>>()?;
    let next_cursor = if instruments.len() > limit {
        instruments.truncate(limit);
        instruments.last().map(|i| {
            Cursor {
                symbol: i.tradingsymbol.clone(),
                token: i.instrument_token,
            }
            .encode()
        })
    } else {
        None
    };
    Ok(Json(InstrumentPage {
        instruments,
        next_cursor,
    }))
}

const ONE: Sql = Sql {
    name: "instrument",
    text:
        "SELECT instrument_token, exchange_token, tradingsymbol, name, last_price, expiry, strike,
       tick_size, lot_size, instrument_type, segment, exchange, updated_at
FROM instruments
WHERE instrument_token = $1",
    types: &[Type::INT8],
};

/// `GET /api/v1/instruments/{token}`: the token's latest definition.
pub(crate) async fn one(
    State(app): State<Arc<App>>,
    Path(token): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Json<Instrument>, Problem> {
    Params::strict(query.as_deref(), openapi::INSTRUMENT.params)?;
    let token: i64 = token.parse().map_err(|_| {
        Problem::bad_parameter(
            "token",
            format!("{token:?} is not an instrument token (a whole number)"),
        )
    })?;
    let rows = app.db.query(&ONE, &[&token]).await?;
    match rows.first() {
        Some(row) => Ok(Json(Instrument::from_row(row)?)),
        None => Err(Problem::unknown(
            "unknown_instrument",
            "token",
            format!("no instrument with token {token} is stored"),
        )),
    }
}

/// Where a page of the search ends: the last (tradingsymbol, token) returned. Encoded as
/// the symbol's bytes in hex, a dot and the token, so it survives any URL unescaped.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Cursor {
    symbol: String,
    token: i64,
}

impl Cursor {
    fn encode(&self) -> String {
        let hex: String = self.symbol.bytes().map(|b| format!("{b:02x}")).collect();
        format!("{hex}.{}", self.token)
    }

    fn parse(raw: &str) -> Result<Cursor, String> {
        let bad = || format!("{raw:?} is not a cursor returned by this endpoint");
        let (hex, token) = raw.split_once('.').ok_or_else(bad)?;
        if hex.len() % 2 != 0 || hex.len() > 256 {
            return Err(bad());
        }
        let bytes = (0..hex.len())
            .step_by(2)
            .map(|i| {
                hex.get(i..i + 2)
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
            })
            .collect::<Option<Vec<u8>>>()
            .ok_or_else(bad)?;
        let symbol = String::from_utf8(bytes).map_err(|_| bad())?;
        if symbol.chars().any(char::is_control) {
            return Err(bad());
        }
        let token = token.parse().map_err(|_| bad())?;
        Ok(Cursor { symbol, token })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_refuse_anything_else() {
        let cursor = Cursor {
            symbol: "NIFTY 50".into(),
            token: 256_265,
        };
        let encoded = cursor.encode();
        assert_eq!(encoded, "4e49465459203530.256265");
        assert_eq!(Cursor::parse(&encoded), Ok(cursor));
        for bad in ["", "abc", "zz.1", "4e4.1", "4e49.x", "00.1", "ff.1"] {
            assert!(Cursor::parse(bad).is_err(), "{bad}");
        }
    }
}
