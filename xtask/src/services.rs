//! Database servers the test suite talks to: PostgreSQL and MariaDB.
//!
//! The project's machines run both on 127.0.0.1 (see the services notes in
//! the repo docs). A stopped local server is started again; on a developer's
//! own machine `DLT_TEST_POSTGRES_URL` / `DLT_TEST_MYSQL_URL` point elsewhere.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};

use crate::util::{Ctx, describe, is_ci};

struct Down {
    svc: &'static Service,
    host: String,
    port: u16,
    shown: String,
    local: bool,
    from_env: bool,
}

const START_TIMEOUT: Duration = Duration::from_secs(30);

struct Service {
    name: &'static str,
    env: &'static str,
    default_url: &'static str,
    default_port: u16,
    protocol: Protocol,
    start: fn(),
}

static SERVICES: [Service; 2] = [
    Service {
        name: "PostgreSQL",
        env: "DLT_TEST_POSTGRES_URL",
        default_url: "postgresql://postgres@127.0.0.1:5432/test",
        default_port: 5432,
        protocol: Protocol::Postgres,
        start: start_postgres,
    },
    Service {
        name: "MariaDB",
        env: "DLT_TEST_MYSQL_URL",
        default_url: "mysql://root@127.0.0.1:3306/test",
        default_port: 3306,
        protocol: Protocol::MySql,
        start: start_mariadb,
    },
];

/// Check (and if need be start) the servers; export their URLs to children.
/// Under CI a server that stays down is an error, otherwise a warning.
pub fn ensure(ctx: &mut Ctx) -> Result<()> {
    let mut down = Vec::new();
    for svc in &SERVICES {
        let (url, from_env) = match std::env::var(svc.env) {
            Ok(u) if !u.trim().is_empty() => (u, true),
            _ => (svc.default_url.to_string(), false),
        };
        ctx.extra_env.push((svc.env.to_string(), url.clone().into()));
        let shown = redact(&url);
        let Some((host, port)) = host_port(&url, svc.default_port) else {
            eprintln!("xtask: {} at {shown}: no TCP host in the URL (socket?), not checked", svc.name);
            continue;
        };
        if reachable(&host, port, svc.protocol) {
            eprintln!("xtask: {} is up ({host}:{port})", svc.name);
            continue;
        }
        let local = is_local(&host);
        if local {
            eprintln!("xtask: {} is down on {host}:{port}; starting it", svc.name);
            (svc.start)();
        }
        down.push(Down { svc, host, port, shown, local, from_env });
    }

    let mut failures = Vec::new();
    if !down.is_empty() {
        let deadline = Instant::now() + START_TIMEOUT;
        // Only locally started servers are worth waiting for.
        let wait = down.iter().any(|d| d.local);
        loop {
            down.retain(|d| {
                let up = reachable(&d.host, d.port, d.svc.protocol);
                if up {
                    eprintln!("xtask: {} is up ({}:{})", d.svc.name, d.host, d.port);
                }
                !up
            });
            if down.is_empty() || !wait || Instant::now() >= deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        for d in down {
            let Down { svc, host, port, shown, local, from_env } = d;
            let how = if local {
                format!(" (still down {}s after starting it)", START_TIMEOUT.as_secs())
            } else {
                String::new()
            };
            let hint = if from_env {
                format!("check {}", svc.env)
            } else {
                format!("start it, or set {} to a reachable server", svc.env)
            };
            failures.push(format!("{} is not reachable at {host}:{port} ({shown}){how}: {hint}", svc.name));
        }
    }

    if failures.is_empty() {
        return Ok(());
    }
    if is_ci() {
        bail!("test services are down (CI is set, so this is an error):\n  {}", failures.join("\n  "));
    }
    for f in &failures {
        eprintln!("xtask: warning: {f}; tests that need it will fail");
    }
    Ok(())
}

/// Which wire protocol answers on the port: a bare TCP connect is not enough
/// (a proxy or another program may accept connections on any port).
#[derive(Clone, Copy)]
enum Protocol {
    Postgres,
    MySql,
}

fn reachable(host: &str, port: u16, protocol: Protocol) -> bool {
    let Ok(addrs) = (host, port).to_socket_addrs() else {
        return false;
    };
    addrs.into_iter().any(|addr| {
        TcpStream::connect_timeout(&addr, Duration::from_secs(1))
            .is_ok_and(|stream| speaks(stream, protocol).unwrap_or(false))
    })
}

/// Does the server greet like PostgreSQL / MySQL?
fn speaks(mut stream: TcpStream, protocol: Protocol) -> std::io::Result<bool> {
    let timeout = Some(Duration::from_secs(2));
    stream.set_read_timeout(timeout)?;
    stream.set_write_timeout(timeout)?;
    match protocol {
        Protocol::Postgres => {
            // GSSENCRequest: the server answers one byte ('G' or 'N') and,
            // unlike an SSLRequest left unanswered, logs nothing when we hang up.
            stream.write_all(&[0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x30])?;
            let mut b = [0u8; 1];
            stream.read_exact(&mut b)?;
            Ok(matches!(b[0], b'G' | b'N' | b'E'))
        }
        Protocol::MySql => {
            // The server speaks first: packet header (4 bytes), then protocol
            // version 10, or 0xff for an error packet (still a MySQL server).
            let mut b = [0u8; 5];
            stream.read_exact(&mut b)?;
            Ok(matches!(b[4], 0x0a | 0xff))
        }
    }
}

fn is_local(host: &str) -> bool {
    matches!(host, "127.0.0.1" | "localhost" | "::1")
}

/// `pg_ctlcluster --skip-systemctl-redirect <version> main start`, for each
/// installed version (normally exactly one).
fn start_postgres() {
    let versions: Vec<String> = match std::fs::read_dir("/etc/postgresql") {
        Ok(rd) => rd
            .filter_map(|e| e.ok())
            .filter(|e| e.path().is_dir())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => {
            eprintln!("xtask: no /etc/postgresql here: don't know how to start PostgreSQL");
            return;
        }
    };
    for v in versions {
        try_start(Command::new("pg_ctlcluster").arg("--skip-systemctl-redirect").arg(&v).arg("main").arg("start"));
    }
}

/// `start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd`
fn start_mariadb() {
    let daemon = "/usr/sbin/mariadbd";
    if !Path::new(daemon).exists() {
        eprintln!("xtask: no {daemon} here: don't know how to start MariaDB");
        return;
    }
    try_start(Command::new("start-stop-daemon").args(["--start", "--oknodo", "--background", "--exec"]).arg(daemon));
}

fn try_start(cmd: &mut Command) {
    eprintln!("xtask: $ {}", describe(cmd));
    match cmd.stdin(Stdio::null()).status() {
        Ok(st) if st.success() => {}
        Ok(st) => eprintln!("xtask: `{}` failed ({st})", describe(cmd)),
        Err(e) => eprintln!("xtask: cannot run `{}`: {e}", describe(cmd)),
    }
}

/// Host and port of `scheme://[user[:password]@]host[:port][/path][?query]`;
/// `None` when there is no host (a Unix socket URL).
fn host_port(url: &str, default_port: u16) -> Option<(String, u16)> {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let hostport = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
        let (h, after) = v6.split_once(']')?;
        (h, after.strip_prefix(':'))
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (hostport, None),
        }
    };
    if host.is_empty() {
        return None;
    }
    let port = match port {
        Some(p) if !p.is_empty() => p.parse().ok()?,
        _ => default_port,
    };
    Some((host.to_string(), port))
}

/// The URL with any password replaced by `***`, for log lines.
fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{host}{tail}"),
            None => url.to_string(),
        },
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_hosts_and_ports() {
        let hp = |u: &str, d| host_port(u, d);
        assert_eq!(hp("postgresql://postgres@127.0.0.1:5432/test", 1), Some(("127.0.0.1".into(), 5432)));
        assert_eq!(hp("mysql://root:pw@db.example:3307/test?ssl=1", 1), Some(("db.example".into(), 3307)));
        assert_eq!(hp("postgres://u@localhost/x", 5432), Some(("localhost".into(), 5432)));
        assert_eq!(hp("postgres://[::1]:6543/x", 1), Some(("::1".into(), 6543)));
        assert_eq!(hp("postgres:///test?host=/var/run/postgresql", 5432), None);
        assert_eq!(hp("postgres://h:notaport/x", 1), None);
    }

    #[test]
    fn redacts_passwords() {
        assert_eq!(redact("mysql://root:secret@h:1/db"), "mysql://root:***@h:1/db");
        assert_eq!(redact("mysql://root@h/db"), "mysql://root@h/db");
    }
}
