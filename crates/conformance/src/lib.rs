//! Differential conformance tooling for dlt-rs: the canonical DuckDB dump and the result
//! comparison of the dlt conformance corpus (Rust ports of `dump.py`, `compare.py` and
//! `jsonfmt.py`; see the corpus README, sections 2, 4 and 5).

pub mod bq_mirror;
pub mod compare;
pub mod dump;
pub mod fs_mirror;
pub mod jsonfmt;
pub mod pg_mirror;
pub mod pyfmt;
pub mod runner;
pub mod schema_docs;
pub mod sf_mirror;
pub mod text_copy;

pub use compare::{CompareOptions, compare, format_report, try_compare};
pub use dump::{dump, dump_connection};
pub use jsonfmt::to_pretty_json;
