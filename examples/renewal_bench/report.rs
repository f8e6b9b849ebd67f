//! The tables: the cold start, the steady window, one row per renewal cycle, and (with
//! `--series`) mints per second as CSV.

use hdrhistogram::Histogram;

use crate::record::Second;
use crate::{Args, Error, Run};

/// Mint rate and latency over the seconds `from..to` of a run.
#[derive(Debug)]
struct Window {
    from: usize,
    to: usize,
    minted: u64,
    mean: f64,
    min: u64,
    max: u64,
    /// Seconds with at least one mint.
    active: usize,
    exhausted: u64,
    timed_out: u64,
    other_failures: u64,
    p50_ms: f64,
    p99_ms: f64,
}

/// Returns the figures of seconds `from..to` (clamped to the run). Fails when histograms
/// cannot be merged.
fn window(seconds: &[Second], from: usize, to: usize) -> Result<Window, Error> {
    let to = to.min(seconds.len());
    let from = from.min(to);
    let slice = seconds.get(from..to).unwrap_or(&[]);
    let mut latency = Histogram::<u64>::new_with_bounds(1, 120_000_000, 2)?;
    for s in slice {
        latency.add(&s.latency)?;
    }
    let minted: u64 = slice.iter().map(|s| s.minted).sum();
    let ms = |q: f64| latency.value_at_quantile(q) as f64 / 1000.0;
    Ok(Window {
        from,
        to,
        minted,
        mean: minted as f64 / slice.len().max(1) as f64,
        min: slice.iter().map(|s| s.minted).min().unwrap_or(0),
        max: slice.iter().map(|s| s.minted).max().unwrap_or(0),
        active: slice.iter().filter(|s| s.minted > 0).count(),
        exhausted: slice.iter().map(|s| s.exhausted).sum(),
        timed_out: slice.iter().map(|s| s.timed_out).sum(),
        other_failures: slice.iter().map(|s| s.other_failures).sum(),
        p50_ms: ms(0.5),
        p99_ms: ms(0.99),
    })
}

/// Returns the windows of the renewal cycles that fit in `seconds`: cycle 0 is the cold start
/// (up to a quarter of the TTL), cycle k the TTL/2 seconds centred on k × TTL/2.
fn cycles(ttl: u32, seconds: u64) -> Vec<(usize, usize)> {
    let period = f64::from(ttl) / 2.0;
    let edge = |k: f64| (k * period).round() as usize;
    let mut windows = vec![(0, edge(0.5))];
    let mut k = 1.0;
    while edge(k + 0.5) as u64 <= seconds {
        windows.push((edge(k - 0.5), edge(k + 0.5)));
        k += 1.0;
    }
    windows
}

/// Returns the mean CPU use of (broker, agents) in seconds `from..to`, as fractions of a core.
fn cpu_share(cpu: &[(f64, f64)], from: usize, to: usize) -> (f64, f64) {
    match (cpu.get(from), cpu.get(to)) {
        (Some(a), Some(b)) if to > from => {
            let span = (to - from) as f64;
            ((b.0 - a.0) / span, (b.1 - a.1) / span)
        }
        _ => (f64::NAN, f64::NAN),
    }
}

/// Prints the cold-start table.
fn print_cold_start(args: &Args, runs: &[Run]) -> Result<(), Error> {
    println!("\nCold start: {} agents started at once\n", args.agents);
    println!(
        "| mode | all held a credential after | peak mints/s | p50 | p99 | RESOURCE_EXHAUSTED | \
         timed out | other failures | peak calls in flight |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for run in runs {
        let cycle0 = cycles(args.ttl, args.seconds)
            .first()
            .copied()
            .unwrap_or((0, 0));
        let w = window(&run.seconds, cycle0.0, cycle0.1)?;
        let held = run
            .cold_start
            .map_or("not within the run".to_owned(), |s| format!("{s:.2} s"));
        println!(
            "| {} | {held} | {} | {:.2} ms | {:.2} ms | {} | {} | {} | {} |",
            run.mode.name(),
            w.max,
            w.p50_ms,
            w.p99_ms,
            w.exhausted,
            w.timed_out,
            w.other_failures,
            run.peak_in_flight
        );
    }
    Ok(())
}

/// Prints the steady-window table: cycle 2 to the last full cycle, and the last three cycles
/// (once the cold start's wave has mostly spread out); nothing when the run ends before cycle 2
/// does. Fails when histograms cannot be merged.
fn print_steady(args: &Args, runs: &[Run]) -> Result<(), Error> {
    let windows = cycles(args.ttl, args.seconds);
    let last = windows.len().saturating_sub(1);
    let (from, to) = match (windows.get(2), windows.last()) {
        (Some(first), Some(end)) => (first.0, end.1),
        _ => {
            println!("\nNo steady window: --seconds ends before cycle 2 does.");
            return Ok(());
        }
    };
    let settled = windows
        .get(last.saturating_sub(2).max(2))
        .map_or(from, |w| w.0);
    let expected = args.agents as f64 / (0.5 * f64::from(args.ttl));
    println!(
        "\nSteady window, after the first renewal cycle; expected N / (0.5 × TTL) = \
         {expected:.0} mints/s\n"
    );
    println!(
        "| mode | window | mean mints/s | min | max | max ÷ mean | p50 | p99 | failures | \
         broker CPU | agents CPU | load avg before → after |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    let spans = [
        (format!("cycles 2–{last}, s {from}–{to}"), from),
        (
            format!(
                "cycles {}–{last}, s {settled}–{to}",
                last.saturating_sub(2).max(2)
            ),
            settled,
        ),
    ];
    for run in runs {
        for (label, from) in &spans {
            steady_row(run, label, *from, to)?;
        }
    }
    Ok(())
}

/// Prints the steady-window row of `run` for seconds `from..to`.
fn steady_row(run: &Run, label: &str, from: usize, to: usize) -> Result<(), Error> {
    let w = window(&run.seconds, from, to)?;
    let (broker, agents) = cpu_share(&run.cpu, from, to);
    println!(
        "| {} | {label} | {:.1} | {} | {} | {:.2} | {:.2} ms | {:.2} ms | {} | {:.0} % of a core \
         ({:.0} µs/mint) | {:.0} % | {} → {} |",
        run.mode.name(),
        w.mean,
        w.min,
        w.max,
        w.max as f64 / w.mean.max(f64::MIN_POSITIVE),
        w.p50_ms,
        w.p99_ms,
        w.exhausted + w.timed_out + w.other_failures,
        broker * 100.0,
        broker * (to - from) as f64 * 1e6 / w.minted.max(1) as f64,
        agents * 100.0,
        run.load.0,
        run.load.1,
    );
    Ok(())
}

/// Prints one row per renewal cycle of `run`.
fn print_cycles(args: &Args, run: &Run) -> Result<(), Error> {
    println!("\nPer cycle, {}:\n", run.mode.name());
    println!(
        "| cycle | seconds | mints | mean/s | min | max | max ÷ mean | seconds with mints | \
         p99 | failures |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for (k, (from, to)) in cycles(args.ttl, args.seconds).into_iter().enumerate() {
        let w = window(&run.seconds, from, to)?;
        println!(
            "| {k} | {}–{} | {} | {:.1} | {} | {} | {:.2} | {} of {} | {:.2} ms | {} |",
            w.from,
            w.to,
            w.minted,
            w.mean,
            w.min,
            w.max,
            w.max as f64 / w.mean.max(f64::MIN_POSITIVE),
            w.active,
            w.to - w.from,
            w.p99_ms,
            w.exhausted + w.timed_out + w.other_failures,
        );
    }
    Ok(())
}

/// Prints every table, then (with `--series`) mints per second as CSV.
pub(crate) fn report(args: &Args, runs: &[Run]) -> Result<(), Error> {
    print_cold_start(args, runs)?;
    print_steady(args, runs)?;
    for run in runs {
        print_cycles(args, run)?;
        if let Some(why) = &run.first_failure {
            println!("\nfirst failure other than RESOURCE_EXHAUSTED or a timeout: {why}");
        }
        println!(
            "\nfailed attempts counted by the sources themselves: {}",
            run.source_failures
        );
    }
    if args.series {
        println!("\nmode,second,minted,failed,p99_ms");
        for run in runs {
            for (t, s) in run.seconds.iter().enumerate().take(args.seconds as usize) {
                let p99 = s.latency.value_at_quantile(0.99) as f64 / 1000.0;
                println!("{:?},{t},{},{},{p99:.2}", run.mode, s.minted, s.failures());
            }
        }
    }
    Ok(())
}
