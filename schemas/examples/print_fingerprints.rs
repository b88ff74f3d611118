//! Prints the canonical form and fingerprint of every schema (handy when a schema changes and the
//! pinned values in the tests must be reviewed).
use strikeflow_schemas::{
    try_fingerprint, AvroRecord, Bar, CodecError, Instrument, Tick, Watermark,
};

fn show<T: AvroRecord>() -> Result<(), CodecError> {
    let codec = T::schema_codec()?;
    println!(
        "{} {:#018x}\n  {}",
        T::NAME,
        try_fingerprint::<T>()?,
        codec.canonical_form()
    );
    Ok(())
}

fn main() -> Result<(), CodecError> {
    show::<Instrument>()?;
    show::<Tick>()?;
    show::<Bar>()?;
    show::<Watermark>()
}
