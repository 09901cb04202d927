//! The dlt-rs command line as a library: [`main_with`] runs the `dlt` command with the
//! connectors of a [`Registry`], so a project builds its own `dlt` binary with its own
//! connectors:
//!
//! ```no_run
//! let registry = dlt::registry(); // the connectors compiled into `dlt`
//! // registry.register_destination(Arc::new(my_crate::MyFactory));
//! dlt_cli::main_with(registry)
//! ```
//!
//! The bundled `dlt` binary is `main_with(dlt::registry())`.

mod commands;
mod exit;
mod init;
mod progress;

use std::io::IsTerminal;
use std::sync::OnceLock;

use clap::{Parser, Subcommand};
use dlt::dlt_core::registry::Registry;

static REGISTRY: OnceLock<Registry> = OnceLock::new();

/// The connectors this binary was started with.
pub(crate) fn registry() -> &'static Registry {
    REGISTRY.get_or_init(dlt::registry)
}

#[derive(Parser)]
#[command(
    name = "dlt",
    display_name = "dlt-rs",
    version,
    about = "dlt-rs: load data from files, APIs and databases into DuckDB and more"
)]
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
        /// The pipeline file (.toml, .yaml/.yml or .json).
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
        /// Run a pipeline that another pipeline file with another source or destination ran
        /// before (it takes over that pipeline's state).
        #[arg(long)]
        force: bool,
    },
    /// Inspect and manage pipelines in the pipelines dir.
    Pipeline(commands::PipelineArgs),
    /// Start a project: a commented pipeline file for SOURCE and DESTINATION, `.dlt/config.toml`,
    /// a `.dlt/secrets.toml` template and a `.gitignore` for the secrets.
    Init {
        /// A source with a template (`dlt init --help` of the bundled binary: rest_api,
        /// sql_database or files).
        source: String,
        /// A destination with a template (bundled: duckdb, postgres or filesystem).
        destination: String,
        /// Overwrite an existing pipeline file.
        #[arg(long)]
        force: bool,
    },
}

/// Run the `dlt` command line with the connectors of `registry`, then exit with its code
/// (0, or the codes `dlt` documents: 1 failed, 2 configuration, 3 transient, 4 data).
pub fn main_with(connectors: Registry) -> ! {
    let _ = REGISTRY.set(connectors);
    no_transparent_huge_pages();
    quiet_broken_pipes();
    let cli = Cli::parse();
    let filter = if cli.verbose { "info" } else { "warn" };
    let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("RUNTIME__LOG_LEVEL")
                .map(|f| f.to_string().to_ascii_lowercase())
                .ok()
                .and_then(|f| tracing_subscriber::EnvFilter::try_new(f).ok())
                .unwrap_or_else(|| tracing_subscriber::EnvFilter::new(filter)),
        )
        .with_ansi(colour)
        .with_writer(std::io::stderr)
        .try_init();
    let mut json_errors = false;
    let result: Result<(), exit::Failure> = match cli.command {
        Command::Run { file, json, no_progress, refresh, force } => {
            json_errors = json;
            commands::run(&file, json, no_progress, refresh.as_deref(), force)
        }
        Command::Pipeline(args) => commands::pipeline(args, cli.yes, cli.verbose).map_err(Into::into),
        Command::Init { source, destination, force } => std::env::current_dir()
            .map_err(Into::into)
            .and_then(|d| init::init(registry(), &d, &source, &destination, force))
            .map_err(Into::into),
    };
    if let Err(f) = result {
        let code = exit::code(&f.error);
        if json_errors {
            println!("{}", serde_json::to_string_pretty(&exit::json(&f)).unwrap_or_default());
        }
        eprintln!("ERROR: {}", exit::message(&f.error));
        commands::explain_recovery(&f);
        std::process::exit(code);
    }
    std::process::exit(0)
}

/// `dlt … | head` closes the pipe early: end quietly, as other command-line tools do, instead
/// of panicking in `println!`.
fn quiet_broken_pipes() {
    #[cfg(unix)]
    // SAFETY: restores the default action of one signal before any thread is started.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
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
