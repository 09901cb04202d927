//! `custom-dlt`: the `dlt` command line with every bundled connector plus the `jsonl_folder`
//! destination of this crate.

use std::sync::Arc;

fn main() {
    let mut registry = dlt::registry();
    registry.register_destination(Arc::new(custom_destination::JsonlFolderFactory));
    dlt_cli::main_with(registry)
}
