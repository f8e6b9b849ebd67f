//! `tessera review`: reads the grants and their usage from `Admin/ListGrants` and reports what
//! their owners should act on ([`rules`]): unused grants, parts never used, grants expiring or
//! expired, CI grants that trust too widely, owners with nothing live — with the longest
//! `max_ttl`s for information. Exits 1 when there are findings, so it can gate a pipeline.

mod render;
pub mod rules;

use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use tessera_proto::ListGrantsRequest;

pub use self::render::when;
use self::rules::{ReviewParams, review};
use crate::ops::{Connection, connect, runtime, status};

/// Options of `tessera review`.
#[derive(Debug, Args)]
pub struct ReviewArgs {
    /// A grant with no issue within this long (or never) is a finding (e.g. 30d, 12h).
    #[arg(long, default_value = "30d", value_parser = duration)]
    unused_for: Duration,
    /// A grant whose `expires` day ends within this long is a finding (expired ones always are).
    #[arg(long, default_value = "14d", value_parser = duration)]
    expiring_within: Duration,
    /// Print one JSON object.
    #[arg(long, conflicts_with = "markdown")]
    json: bool,
    /// Print Markdown (for a ticket or a pull request).
    #[arg(long)]
    markdown: bool,
}

/// Parses a duration such as `30d`, `12h` or `90m`; fails naming the accepted forms.
fn duration(text: &str) -> Result<Duration, String> {
    tessera_server::config::parse_duration(text).map_err(|e| e.to_string())
}

/// Exit code when the review found something to act on.
const FINDINGS: u8 = 1;
/// Exit code when the review could not be made (unreachable broker, not an admin, ...).
const ERROR: u8 = 2;

/// Runs the review against the broker of `c` and prints it; returns 0 when there is nothing
/// to act on, 1 when there are findings, 2 (with the reason on stderr) when it cannot review.
pub fn run(c: Connection, a: ReviewArgs) -> ExitCode {
    match review_and_print(&c, &a) {
        Ok(0) => ExitCode::SUCCESS,
        Ok(_) => ExitCode::from(FINDINGS),
        Err(message) => {
            eprintln!("tessera: {message}");
            ExitCode::from(ERROR)
        }
    }
}

/// Prints the review; returns how many findings it has.
fn review_and_print(c: &Connection, a: &ReviewArgs) -> crate::ops::Result<usize> {
    let reply = runtime()?.block_on(async {
        let mut admin = connect(c).await?;
        admin
            .list_grants(ListGrantsRequest {})
            .await
            .map(tonic::Response::into_inner)
            .map_err(status)
    })?;
    let params = ReviewParams {
        unused_for: a.unused_for,
        expiring_within: a.expiring_within,
        // The broker's clock: the one its usage windows were read with.
        now_ms: reply.now_ms,
    };
    let found = review(&reply.grants, &params).map_err(|e| e.to_string())?;
    let n = reply.grants.len();
    if a.json {
        println!("{}", render::json(&found, n, &params));
    } else if a.markdown {
        print!("{}", render::markdown(&found, n, &params));
    } else {
        print!("{}", render::text(&found, n, &params));
    }
    Ok(found.findings.len())
}
