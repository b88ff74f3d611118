//! PostgreSQL's binary `COPY … FROM STDIN (FORMAT binary)` stream, encoded by hand.
//!
//! Why not `tokio_postgres::binary_copy::BinaryCopyInWriter`: it encodes every field through
//! `&dyn ToSql` (a virtual call, a type check and a length patch per field) and hands the
//! connection a 4 KiB piece at a time, each an awaited send through the connection task's
//! channel of depth one, so a 20,000-tick batch (2.4 MB) is some 600 hand-overs between two
//! tasks and as many socket writes. The sink knows every column's type when it is written,
//! so [`Row`] writes each value straight into one buffer per COPY, and [`CopyIn`] sends that
//! buffer in [`CHUNK`]-sized pieces.
//!
//! The format (PostgreSQL manual, `COPY`, "Binary Format"): an 11-byte signature, a 32-bit
//! flags field and a 32-bit header-extension length (both 0); then per row a 16-bit field
//! count and per field a 32-bit length (-1 for NULL) followed by the value in its type's
//! binary send format; then a 16-bit -1. Every integer is big-endian.

use std::pin::Pin;

use bytes::{BufMut, Bytes, BytesMut};
use chrono::NaiveDate;
use futures::SinkExt;
use strikeflow_schemas::days_from_date;
use tokio_postgres::types::Type;
use tokio_postgres::{CopyInSink, Error, Transaction};

/// A column of a COPY: its name and its type. The type is what [`Row`]'s method for it
/// writes; debug builds check every value against it.
pub(crate) type Column = (&'static str, Type);

/// The bytes every binary COPY stream starts with: the signature, then flags and the
/// header-extension length, both zero (no OIDs, no extension).
const HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";

/// How much encoded data is sent at once. Large enough that the hand-over to the connection
/// task and the socket write are paid per megabyte instead of per 4 KiB, small enough that
/// PostgreSQL starts parsing a large batch while the rest is still being encoded.
pub(crate) const CHUNK: usize = 1 << 20;

/// Micros from the Unix epoch to PostgreSQL's (2000-01-01 00:00 UTC), which `timestamptz`
/// counts from.
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;

/// Days from 1970-01-01 to 2000-01-01, PostgreSQL's epoch for `date`.
const PG_EPOCH_DAYS: i32 = 10_957;

/// A field length PostgreSQL refuses (`invalid field size`, SQLSTATE 22P04, a data error),
/// written in place of a value that cannot be encoded (longer than the 32-bit length can
/// say): its row is then refused and dead-lettered like any other row PostgreSQL rejects,
/// instead of stopping the sink or storing something else.
const REFUSED: i32 = -2;

/// Encoded rows of one binary COPY, header included; the buffer a [`CopyIn`] fills, apart
/// so the encoding can be tested without a server.
#[derive(Debug)]
pub(crate) struct Rows {
    buf: BytesMut,
}

impl Rows {
    /// A stream holding only the header. It starts small, as most batches of a live stream
    /// are, and grows; once a chunk has been taken the batch is a large one, and each next
    /// buffer is a whole chunk from the start.
    pub(crate) fn new() -> Self {
        let mut buf = BytesMut::with_capacity(64 << 10);
        buf.put_slice(HEADER);
        Self { buf }
    }

    /// Starts a row of `columns` (at most a few dozen); each of [`Row`]'s methods writes the
    /// next column's value.
    pub(crate) fn row(&mut self, columns: &'static [Column]) -> Row<'_> {
        self.buf.put_i16(columns.len() as i16);
        Row {
            buf: &mut self.buf,
            #[cfg(debug_assertions)]
            columns,
        }
    }

    /// Bytes encoded and not yet taken.
    pub(crate) fn len(&self) -> usize {
        self.buf.len()
    }

    /// Takes what is encoded so far (to send it), leaving a fresh buffer of a chunk and some
    /// (a row may overshoot), so the rest of a large batch is not copied by growing.
    fn take(&mut self) -> Bytes {
        let full = std::mem::replace(&mut self.buf, BytesMut::with_capacity(CHUNK + CHUNK / 4));
        full.freeze()
    }

    /// Ends the stream with its trailer and returns what was not taken yet.
    pub(crate) fn finish(mut self) -> Bytes {
        self.buf.put_i16(-1);
        self.buf.freeze()
    }
}

/// One row being written: one method call per column, in the COPY statement's column order.
/// The methods return the row again, so a row reads as one chain of its columns.
#[derive(Debug)]
pub(crate) struct Row<'b> {
    buf: &'b mut BytesMut,
    /// The columns still to write, checked in debug builds: a value of another type, or a
    /// row with a value too many or too few, would make PostgreSQL misread the stream.
    #[cfg(debug_assertions)]
    columns: &'static [Column],
}

impl Row<'_> {
    /// Counts one value of type `ty` written (`None`: NULL, any type), checking it against
    /// the column's type in debug builds.
    fn field(&mut self, ty: Option<Type>) -> &mut Self {
        #[cfg(debug_assertions)]
        {
            match self.columns.split_first() {
                Some(((name, column), rest)) => {
                    if let Some(ty) = ty {
                        debug_assert_eq!(&ty, column, "column {name}");
                    }
                    self.columns = rest;
                }
                None => debug_assert!(false, "more values than columns"),
            }
        }
        #[cfg(not(debug_assertions))]
        let _ = ty;
        self
    }

    /// A NULL.
    pub(crate) fn null(&mut self) -> &mut Self {
        self.buf.put_i32(-1);
        self.field(None)
    }

    /// `bigint`.
    pub(crate) fn int8(&mut self, v: i64) -> &mut Self {
        self.buf.put_i32(8);
        self.buf.put_i64(v);
        self.field(Some(Type::INT8))
    }

    /// `bigint`, NULL for `None`.
    pub(crate) fn int8_opt(&mut self, v: Option<i64>) -> &mut Self {
        match v {
            Some(v) => self.int8(v),
            None => self.null(),
        }
    }

    /// `integer`.
    pub(crate) fn int4(&mut self, v: i32) -> &mut Self {
        self.buf.put_i32(4);
        self.buf.put_i32(v);
        self.field(Some(Type::INT4))
    }

    /// `double precision` (IEEE 754 bits, so NaN and infinities pass as PostgreSQL has them).
    pub(crate) fn float8(&mut self, v: f64) -> &mut Self {
        self.buf.put_i32(8);
        self.buf.put_f64(v);
        self.field(Some(Type::FLOAT8))
    }

    /// `double precision`, NULL for `None`.
    pub(crate) fn float8_opt(&mut self, v: Option<f64>) -> &mut Self {
        match v {
            Some(v) => self.float8(v),
            None => self.null(),
        }
    }

    /// `boolean`.
    pub(crate) fn bool(&mut self, v: bool) -> &mut Self {
        self.buf.put_i32(1);
        self.buf.put_u8(u8::from(v));
        self.field(Some(Type::BOOL))
    }

    /// `text`: the UTF-8 bytes as they are. PostgreSQL checks them (a NUL byte is refused
    /// with SQLSTATE 22021, a data error), as it does for `ToSql`'s encoding.
    pub(crate) fn text(&mut self, v: &str) -> &mut Self {
        match i32::try_from(v.len()) {
            Ok(len) => {
                self.buf.put_i32(len);
                self.buf.put_slice(v.as_bytes());
            }
            Err(_) => self.buf.put_i32(REFUSED),
        }
        self.field(Some(Type::TEXT))
    }

    /// `text`, NULL for `None`.
    pub(crate) fn text_opt(&mut self, v: Option<&str>) -> &mut Self {
        match v {
            Some(v) => self.text(v),
            None => self.null(),
        }
    }

    /// `timestamptz` from micros since the Unix epoch (the Avro `timestamp-micros`).
    /// PostgreSQL counts from 2000-01-01; an instant too far in the past to count from there
    /// saturates and is refused as out of range (SQLSTATE 22008), never wrapped into another.
    pub(crate) fn timestamptz(&mut self, unix_micros: i64) -> &mut Self {
        self.buf.put_i32(8);
        self.buf
            .put_i64(unix_micros.saturating_sub(PG_EPOCH_MICROS));
        self.field(Some(Type::TIMESTAMPTZ))
    }

    /// `date`, counted in days from 2000-01-01 (chrono's dates span ±96 million days, far
    /// inside i32).
    pub(crate) fn date(&mut self, v: NaiveDate) -> &mut Self {
        self.buf.put_i32(4);
        self.buf.put_i32(days_from_date(v) - PG_EPOCH_DAYS);
        self.field(Some(Type::DATE))
    }

    /// `date`, NULL for `None`.
    pub(crate) fn date_opt(&mut self, v: Option<NaiveDate>) -> &mut Self {
        match v {
            Some(v) => self.date(v),
            None => self.null(),
        }
    }

    /// `jsonb` of `value`: the format version (1), then the JSON text, written by serde_json
    /// straight into the stream. Should serialising fail, the field is refused by PostgreSQL
    /// (see [`REFUSED`]) rather than the sink stopping.
    pub(crate) fn jsonb<T: serde::Serialize + ?Sized>(&mut self, value: &T) -> &mut Self {
        let at = self.buf.len();
        self.buf.put_i32(0);
        self.buf.put_u8(1);
        let written = serde_json::to_writer((&mut *self.buf).writer(), value);
        let len = written
            .ok()
            .and_then(|()| i32::try_from(self.buf.len() - at - 4).ok());
        match len {
            Some(len) => self.buf[at..at + 4].copy_from_slice(&len.to_be_bytes()),
            None => {
                self.buf.truncate(at);
                self.buf.put_i32(REFUSED);
            }
        }
        self.field(Some(Type::JSONB))
    }
}

#[cfg(debug_assertions)]
impl Drop for Row<'_> {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let unwritten: Vec<&str> = self.columns.iter().map(|(name, _)| *name).collect();
            debug_assert!(unwritten.is_empty(), "a row left {unwritten:?} unwritten");
        }
    }
}

/// A binary `COPY … FROM STDIN` in progress: rows are encoded into [`Rows`] and sent a
/// [`CHUNK`] at a time.
pub(crate) struct CopyIn {
    /// Boxed because the sink is `!Unpin` and a `CopyIn` is moved around.
    sink: Pin<Box<CopyInSink<Bytes>>>,
    rows: Rows,
}

impl CopyIn {
    /// Starts `sql`, a `COPY … FROM STDIN (FORMAT binary)`, in `tx`.
    pub(crate) async fn start(tx: &Transaction<'_>, sql: &str) -> Result<Self, Error> {
        Ok(Self {
            sink: Box::pin(tx.copy_in(sql).await?),
            rows: Rows::new(),
        })
    }

    /// Starts the next row (see [`Rows::row`]); call [`CopyIn::send_full`] after it.
    pub(crate) fn row(&mut self, columns: &'static [Column]) -> Row<'_> {
        self.rows.row(columns)
    }

    /// Sends what is encoded once it reaches [`CHUNK`]; otherwise does nothing.
    pub(crate) async fn send_full(&mut self) -> Result<(), Error> {
        if self.rows.len() >= CHUNK {
            self.sink.send(self.rows.take()).await?;
        }
        Ok(())
    }

    /// Sends the rest and the trailer, ends the COPY and returns the rows PostgreSQL stored;
    /// a row PostgreSQL refused is reported here. Dropping a `CopyIn` instead aborts the COPY.
    pub(crate) async fn finish(mut self) -> Result<u64, Error> {
        let rest = self.rows.finish();
        self.sink.send(rest).await?;
        self.sink.as_mut().finish().await
    }
}

/// Copies `items` with `sql` (a binary `COPY … FROM STDIN` of `columns`), each written as one
/// row by `write`; returns the rows stored.
pub(crate) async fn copy_rows<T>(
    tx: &Transaction<'_>,
    sql: &str,
    columns: &'static [Column],
    items: impl IntoIterator<Item = T>,
    mut write: impl FnMut(&mut Row<'_>, T),
) -> Result<u64, Error> {
    let mut copy = CopyIn::start(tx, sql).await?;
    for item in items {
        write(&mut copy.row(columns), item);
        copy.send_full().await?;
    }
    copy.finish().await
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    use tokio_postgres::types::{IsNull, Json, ToSql, Type};

    use super::*;

    /// A row as `BinaryCopyInWriter` encodes it: the field count, then per value its length
    /// (or -1) and `ToSql`'s bytes.
    fn reference(values: &[(&(dyn ToSql + Sync), Type)]) -> Vec<u8> {
        let mut buf = BytesMut::new();
        buf.put_i16(values.len() as i16);
        for (value, ty) in values {
            let at = buf.len();
            buf.put_i32(0);
            let len = match value.to_sql_checked(ty, &mut buf).expect("encodable") {
                IsNull::Yes => -1,
                IsNull::No => (buf.len() - at - 4) as i32,
            };
            buf[at..at + 4].copy_from_slice(&len.to_be_bytes());
        }
        buf.to_vec()
    }

    /// The bytes of one row of `columns` written by `write`, without the stream's header and
    /// trailer.
    fn ours(columns: &'static [Column], write: impl FnOnce(&mut Row<'_>)) -> Vec<u8> {
        let mut rows = Rows::new();
        write(&mut rows.row(columns));
        let stream = rows.finish();
        assert_eq!(&stream[..HEADER.len()], HEADER);
        assert_eq!(&stream[stream.len() - 2..], [0xff, 0xff], "trailer -1");
        stream[HEADER.len()..stream.len() - 2].to_vec()
    }

    /// What `writer::timestamp` handed `ToSql` before this encoder.
    fn system_time(micros: i64) -> SystemTime {
        let magnitude = Duration::from_micros(micros.unsigned_abs());
        if micros >= 0 {
            UNIX_EPOCH + magnitude
        } else {
            UNIX_EPOCH - magnitude
        }
    }

    #[test]
    fn the_header_is_the_one_binary_copy_in_writer_sends() {
        assert_eq!(HEADER.len(), 11 + 4 + 4);
        assert_eq!(&HEADER[..11], b"PGCOPY\n\xff\r\n\0");
    }

    #[test]
    fn scalars_encode_as_to_sql_does() {
        for (i, micros) in [
            0,
            1,
            -1,
            PG_EPOCH_MICROS,
            PG_EPOCH_MICROS - 1,
            1_766_000_001_234_567,
            -62_135_596_800_000_000, // 0001-01-01
            i64::MIN / 2,            // refused by PostgreSQL (22008), as before
            253_402_300_799_999_999, // 9999-12-31 23:59:59.999999
        ]
        .into_iter()
        .enumerate()
        {
            let (int8, int4, float8) = (micros ^ i as i64, i as i32 - 3, micros as f64 / 7.0);
            let flag = i % 2 == 0;
            let time = system_time(micros);
            let expected = reference(&[
                (&time, Type::TIMESTAMPTZ),
                (&int8, Type::INT8),
                (&int4, Type::INT4),
                (&float8, Type::FLOAT8),
                (&flag, Type::BOOL),
            ]);
            const COLUMNS: &[Column] = &[
                ("t", Type::TIMESTAMPTZ),
                ("i8", Type::INT8),
                ("i4", Type::INT4),
                ("f8", Type::FLOAT8),
                ("b", Type::BOOL),
            ];
            let got = ours(COLUMNS, |r| {
                r.timestamptz(micros)
                    .int8(int8)
                    .int4(int4)
                    .float8(float8)
                    .bool(flag);
            });
            assert_eq!(got, expected, "micros {micros}");
        }
        for special in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, -0.0, f64::MIN] {
            let expected = reference(&[(&special, Type::FLOAT8)]);
            const FLOAT: &[Column] = &[("f8", Type::FLOAT8)];
            assert_eq!(ours(FLOAT, |r| _ = r.float8(special)), expected);
        }
    }

    #[test]
    fn the_very_distant_past_saturates_instead_of_wrapping() {
        const TIME: &[Column] = &[("t", Type::TIMESTAMPTZ)];
        let got = ours(TIME, |r| _ = r.timestamptz(i64::MIN + 5));
        assert_eq!(got[2..6], 8_i32.to_be_bytes());
        assert_eq!(got[6..], i64::MIN.to_be_bytes());
    }

    #[test]
    fn dates_text_json_and_nulls_encode_as_to_sql_does() {
        for days in [0, -1, 10_957, 20_816, -719_162, 2_932_896] {
            let date = strikeflow_schemas::date_from_days(days).expect("in the calendar");
            let text = format!("NIFTY{days}CE ü");
            let none_text: Option<&str> = None;
            let none_float: Option<f64> = None;
            let none_int: Option<i64> = None;
            let none_date: Option<NaiveDate> = None;
            let outputs: BTreeMap<String, f64> = [
                ("macd".to_owned(), 0.1 + 0.2),
                ("signal".to_owned(), -1e300),
                ("hist".to_owned(), days as f64),
            ]
            .into();
            let expected = reference(&[
                (&date, Type::DATE),
                (&text, Type::TEXT),
                (&"", Type::TEXT),
                (&none_text, Type::TEXT),
                (&none_float, Type::FLOAT8),
                (&none_int, Type::INT8),
                (&none_date, Type::DATE),
                (&Some(2.5_f64), Type::FLOAT8),
                (&Some(7_i64), Type::INT8),
                (&Some("PE"), Type::TEXT),
                (&Json(&outputs), Type::JSONB),
            ]);
            const COLUMNS: &[Column] = &[
                ("date", Type::DATE),
                ("text", Type::TEXT),
                ("empty", Type::TEXT),
                ("no text", Type::TEXT),
                ("no float", Type::FLOAT8),
                ("no int", Type::INT8),
                ("no date", Type::DATE),
                ("float", Type::FLOAT8),
                ("int", Type::INT8),
                ("some text", Type::TEXT),
                ("json", Type::JSONB),
            ];
            let got = ours(COLUMNS, |r| {
                r.date(date)
                    .text(&text)
                    .text("")
                    .text_opt(None)
                    .float8_opt(None)
                    .int8_opt(None)
                    .date_opt(None)
                    .float8_opt(Some(2.5))
                    .int8_opt(Some(7))
                    .text_opt(Some("PE"))
                    .jsonb(&outputs);
            });
            assert_eq!(got, expected, "days {days}");
            const DATE: &[Column] = &[("date", Type::DATE)];
            assert_eq!(
                ours(DATE, |r| _ = r.null()),
                ours(DATE, |r| _ = r.date_opt(None))
            );
        }
    }

    /// Two columns, for the debug checks.
    #[cfg(debug_assertions)]
    const TWO: &[Column] = &[("i8", Type::INT8), ("f8", Type::FLOAT8)];

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "column f8")]
    fn debug_builds_catch_a_value_of_the_wrong_type() {
        ours(TWO, |r| {
            r.int8(1).int8(2);
        });
    }

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "unwritten")]
    fn debug_builds_catch_a_missing_value() {
        ours(TWO, |r| {
            r.int8(1);
        });
    }

    #[test]
    fn a_large_batch_is_sent_in_chunks_and_each_row_stays_whole() {
        let mut rows = Rows::new();
        let mut taken = Vec::new();
        const COLUMNS: &[Column] = &[("n", Type::INT8), ("s", Type::TEXT)];
        for i in 0..100_000_i64 {
            rows.row(COLUMNS).int8(i).text("a row of some length");
            if rows.len() >= CHUNK {
                taken.push(rows.take());
            }
        }
        assert!(taken.len() >= 3, "{} chunks", taken.len());
        assert!(taken.iter().all(|c| c.len() < CHUNK + 64));
        let mut all: Vec<u8> = taken.iter().flat_map(|c| c.iter().copied()).collect();
        all.extend_from_slice(&rows.finish());
        let row = 2 + (4 + 8) + (4 + 20);
        assert_eq!(all.len(), HEADER.len() + 100_000 * row + 2);
    }
}
