//! `dlt`: the dlt-rs command line.

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod commands;
mod init;
mod progress;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "dlt", version, about = "dlt-rs: load data from files, APIs and databases into DuckDB and more")]
struct Cli {
    /// More log output.
    #[arg(short, long, global = true)]
    verbose: bool,
    /// Do not ask for confirmation (needed for `drop` and `sync` without a terminal).
    #[arg(short = 'y', long = "yes", global = true)]
    yes: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a pipeline file: extract, normalize and load.
    Run {
        /// The pipeline file (TOML).
        file: std::path::PathBuf,
        /// Print the load info as JSON (for scripts and orchestrators).
        #[arg(long)]
        json: bool,
        /// Never draw progress bars.
        #[arg(long)]
        no_progress: bool,
        /// dlt's refresh: drop_sources, drop_resources or drop_data.
        #[arg(long)]
        refresh: Option<String>,
    },
    /// Inspect and manage pipelines in the pipelines dir.
    Pipeline(commands::PipelineArgs),
    /// Start a project: a commented pipeline file for SOURCE and DESTINATION, `.dlt/config.toml`,
    /// a `.dlt/secrets.toml` template and a `.gitignore` for the secrets.
    Init {
        /// rest_api, sql_database or files.
        source: String,
        /// duckdb, postgres or filesystem.
        destination: String,
        /// Overwrite an existing pipeline file.
        #[arg(long)]
        force: bool,
    },
}

fn main() {
    no_transparent_huge_pages();
    let cli = Cli::parse();
    let filter = if cli.verbose { "info" } else { "warn" };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("RUNTIME__LOG_LEVEL")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(filter)),
        )
        .with_writer(std::io::stderr)
        .try_init();
    let result = match cli.command {
        Command::Run { file, json, no_progress, refresh } => {
            commands::run(&file, json, no_progress, refresh.as_deref())
        }
        Command::Pipeline(args) => commands::pipeline(args, cli.yes, cli.verbose),
        Command::Init { source, destination, force } => {
            std::env::current_dir().map_err(Into::into).and_then(|d| init::init(&d, &source, &destination, force))
        }
    };
    if let Err(e) = result {
        let mut msg = format!("{e}");
        for cause in e.chain().skip(1) {
            let c = cause.to_string();
            if !msg.contains(&c) {
                msg.push_str(": ");
                msg.push_str(&c);
            }
        }
        eprintln!("ERROR: {}", msg.replace('\n', " "));
        std::process::exit(1);
    }
}

/// The normalizer's column buffers are allocated and freed batch after batch; with transparent
/// huge pages every fresh 2 MiB page is zeroed on first touch, which cost about a tenth of the
/// normalize step (and more peak memory). Ordinary 4 KiB pages are cheaper here.
fn no_transparent_huge_pages() {
    #[cfg(target_os = "linux")]
    // SAFETY: PR_SET_THP_DISABLE takes plain integer arguments and only sets a process flag.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}
