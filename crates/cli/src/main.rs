//! `dlt`: the dlt-rs command line with every connector this build has.

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    dlt_cli::main_with(dlt::registry())
}
