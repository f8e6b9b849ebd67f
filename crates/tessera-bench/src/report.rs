//! What `tessera bench` prints: per step, the offered rate, goodput, percentiles and the
//! broker's memory; per run, the peak sustained goodput against the crypto ceiling, the p99 at
//! half that rate and what overload did. As a table, JSON, or markdown rows.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use super::ceiling::Ceiling;
use super::drive::StepResult;
use super::revoker::RevokeSummary;
use super::{BenchArgs, Scenario};

/// The broker's memory after a step, from `/proc/<pid>/status`.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Memory {
    pub rss_kib: u64,
    pub hwm_kib: u64,
}

/// Returns the memory of process `pid`, or `None` if it cannot be read (not Linux, gone).
pub fn memory_of(pid: u32) -> Option<Memory> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> Option<u64> {
        let line = status.lines().find(|l| l.starts_with(name))?;
        line.split_whitespace().nth(1)?.parse().ok()
    };
    Some(Memory {
        rss_kib: field("VmRSS:")?,
        hwm_kib: field("VmHWM:")?,
    })
}

/// CPU time of each of a process's threads, by thread name (summed), in clock ticks.
#[derive(Debug, Clone, Default)]
pub struct CpuTicks(BTreeMap<String, u64>);

/// Linux's `USER_HZ`: the unit of `utime`/`stime` in `/proc/<pid>/task/<tid>/stat`.
const TICKS_PER_SEC: f64 = 100.0;

/// Returns the CPU time of `pid`'s threads so far, or `None` if `/proc` cannot be read.
pub fn cpu_of(pid: u32) -> Option<CpuTicks> {
    let mut out = CpuTicks::default();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).ok()? {
        let stat = std::fs::read_to_string(task.ok()?.path().join("stat")).ok()?;
        // The name is in parentheses and may hold spaces: fields are counted after the `)`.
        let (head, rest) = stat.rsplit_once(')')?;
        let name = head.split_once('(')?.1.to_owned();
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let user: u64 = fields.get(11)?.parse().ok()?;
        let system: u64 = fields.get(12)?.parse().ok()?;
        *out.0.entry(name).or_default() += user + system;
    }
    Some(out)
}

impl CpuTicks {
    /// Returns CPU microseconds per request per thread name (and `total`) between `self` and
    /// the later `after`, over `requests` requests.
    pub fn per_request(&self, after: &CpuTicks, requests: u64) -> BTreeMap<String, f64> {
        let per = |ticks: u64| ticks as f64 * 1e6 / TICKS_PER_SEC / requests.max(1) as f64;
        let mut out: BTreeMap<String, f64> = after
            .0
            .iter()
            .map(|(name, t)| {
                (
                    name,
                    t.saturating_sub(self.0.get(name).copied().unwrap_or(0)),
                )
            })
            .filter(|(_, d)| *d > 0)
            .map(|(name, d)| (name.clone(), per(d)))
            .collect();
        let total = out.values().sum();
        out.insert("total".to_owned(), total);
        out
    }
}

/// One step and what surrounded it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StepReport {
    /// `ramp`, `half` (half the peak sustained rate) or `overload`.
    pub label: &'static str,
    pub sustained: bool,
    pub result: StepResult,
    pub broker_memory: Option<Memory>,
    /// The broker's CPU microseconds per request during the step, by thread.
    pub broker_cpu_us: Option<BTreeMap<String, f64>>,
    pub revoke: Option<RevokeSummary>,
}

/// The run's conclusions.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Summary {
    /// Highest goodput of a sustained ramp step, requests/s.
    pub peak_goodput: f64,
    /// `peak_goodput` / the ceiling's rate.
    pub ratio_to_ceiling: f64,
    pub half_rate_p99_us: Option<u64>,
    pub overload_goodput_over_peak: Option<f64>,
    pub overload_shed: Option<u64>,
}

/// A whole run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Report {
    pub scenario: Scenario,
    pub p99_limit_ms: u64,
    pub concurrency: usize,
    /// Connections the requests went over (HTTP/1.1 for `exchange` and `peer`).
    pub connections: usize,
    pub ceiling: Ceiling,
    pub steps: Vec<StepReport>,
    pub summary: Summary,
}

impl Report {
    /// Builds the report and its summary from the steps run.
    pub fn new(
        args: &BenchArgs,
        ceiling: Ceiling,
        steps: Vec<StepReport>,
        p99_limit: Duration,
    ) -> Self {
        let peak_goodput = steps
            .iter()
            .filter(|s| s.sustained && s.label == "ramp")
            .map(|s| s.result.goodput)
            .fold(0.0, f64::max);
        let labelled = |label: &str| steps.iter().find(|s| s.label == label);
        let overload = labelled("overload");
        let summary = Summary {
            peak_goodput,
            ratio_to_ceiling: peak_goodput / ceiling.ops_per_sec,
            half_rate_p99_us: labelled("half").map(|s| s.result.p99_us),
            overload_goodput_over_peak: overload
                .filter(|_| peak_goodput > 0.0)
                .map(|s| s.result.goodput / peak_goodput),
            overload_shed: overload.map(|s| s.result.shed),
        };
        Report {
            scenario: args.scenario,
            p99_limit_ms: u64::try_from(p99_limit.as_millis()).unwrap_or(u64::MAX),
            concurrency: args.concurrency,
            connections: match args.scenario {
                Scenario::Exchange | Scenario::Peer => args.http1_connections,
                _ => args.connections,
            },
            ceiling,
            steps,
            summary,
        }
    }

    /// Returns a plain-text table of the steps and the summary.
    pub fn table(&self) -> String {
        let mut out = format!(
            "scenario {:?}: ceiling {:.0}/s ({}, {:.1} µs/op, one thread)\n",
            self.scenario, self.ceiling.ops_per_sec, self.ceiling.what, self.ceiling.micros_per_op
        );
        out.push_str(
            "step      offered/s  goodput/s       ok   shed  errors    p50 ms   p99 ms p99.9 ms   max ms  rss MiB\n",
        );
        for s in &self.steps {
            let r = &s.result;
            let _ = writeln!(
                out,
                "{:<8} {:>10.0} {:>10.0} {:>8} {:>6} {:>7} {:>9.2} {:>8.2} {:>8.2} {:>8.2} {:>8}{}",
                s.label,
                r.offered_rate,
                r.goodput,
                r.ok,
                r.shed,
                r.errors,
                ms(r.p50_us),
                ms(r.p99_us),
                ms(r.p999_us),
                ms(r.max_us),
                s.broker_memory
                    .map_or_else(|| "-".to_owned(), |m| (m.rss_kib / 1024).to_string()),
                if s.sustained { "" } else { "  (not sustained)" },
            );
            if let Some(cpu) = &s.broker_cpu_us {
                let _ = writeln!(out, "         broker CPU per request: {}", cpu_line(cpu));
            }
            if let Some(rv) = &s.revoke {
                let _ = writeln!(
                    out,
                    "         revocations: {} ok / {} sent, p50 {:.2} ms, p99 {:.2} ms",
                    rv.ok,
                    rv.sent,
                    ms(rv.p50_us),
                    ms(rv.p99_us)
                );
            }
            for e in &r.sample_errors {
                let _ = writeln!(out, "         error: {e}");
            }
        }
        let _ = write!(out, "{}", self.summary_line());
        out
    }

    fn summary_line(&self) -> String {
        let s = &self.summary;
        let mut line = format!(
            "peak sustained goodput {:.0}/s = {:.0}% of the ceiling (p99 ≤ {} ms)",
            s.peak_goodput,
            s.ratio_to_ceiling * 100.0,
            self.p99_limit_ms
        );
        if let Some(p99) = s.half_rate_p99_us {
            let _ = write!(line, "; p99 at half that rate {:.2} ms", ms(p99));
        }
        if let (Some(ratio), Some(shed)) = (s.overload_goodput_over_peak, s.overload_shed) {
            let _ = write!(
                line,
                "; overload goodput {:.0}% of peak, {shed} shed",
                ratio * 100.0
            );
        }
        line
    }

    /// Returns markdown: one summary row (scenario | ceiling | peak | ratio | p99 at half |
    /// overload) followed by a table of the steps.
    pub fn markdown(&self) -> String {
        let s = &self.summary;
        let dash = || "—".to_owned();
        let mut out = format!(
            "| `{}` | {:.0}/s ({}) | {:.0}/s | **{:.0}%** | {} | {} |\n\n",
            serde_json::to_value(self.scenario)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default(),
            self.ceiling.ops_per_sec,
            self.ceiling.what,
            s.peak_goodput,
            s.ratio_to_ceiling * 100.0,
            s.half_rate_p99_us
                .map_or_else(dash, |p| format!("{:.2} ms", ms(p))),
            match (s.overload_goodput_over_peak, s.overload_shed) {
                (Some(r), Some(shed)) => format!("{:.0}% of peak, {shed} shed", r * 100.0),
                _ => dash(),
            },
        );
        out.push_str(
            "| step | offered/s | goodput/s | shed | errors | p50 | p99 | p99.9 | broker RSS | broker CPU µs/request |\n",
        );
        out.push_str("|---|---|---|---|---|---|---|---|---|---|\n");
        for st in &self.steps {
            let r = &st.result;
            let _ = writeln!(
                out,
                "| {}{} | {:.0} | {:.0} | {} | {} | {:.2} ms | {:.2} ms | {:.2} ms | {} | {} |",
                st.label,
                if st.sustained { "" } else { " ✗" },
                r.offered_rate,
                r.goodput,
                r.shed,
                r.errors,
                ms(r.p50_us),
                ms(r.p99_us),
                ms(r.p999_us),
                st.broker_memory
                    .map_or_else(dash, |m| format!("{} MiB", m.rss_kib / 1024)),
                st.broker_cpu_us.as_ref().map_or_else(dash, cpu_line),
            );
            if let Some(rv) = &st.revoke {
                let _ = writeln!(
                    out,
                    "| ↳ revocations | {:.0} | {} ok | | {} | {:.2} ms | {:.2} ms | | | |",
                    rv.sent as f64 / r.duration_secs,
                    rv.ok,
                    rv.errors,
                    ms(rv.p50_us),
                    ms(rv.p99_us),
                );
            }
        }
        out
    }
}

/// Prints one line per finished step to stderr, so a long ramp shows progress.
pub fn progress(step: &StepReport) {
    let r = &step.result;
    eprintln!(
        "{} {:.0}/s: goodput {:.0}/s, p50 {:.2} ms, p99 {:.2} ms, shed {}, errors {}{}",
        step.label,
        r.offered_rate,
        r.goodput,
        ms(r.p50_us),
        ms(r.p99_us),
        r.shed,
        r.errors,
        r.sample_errors
            .first()
            .map_or_else(String::new, |e| format!(" (first: {e})")),
    );
}

/// `total 310 (tokio-rt-worker 190, ledger-writer 100, ...)`, largest first.
fn cpu_line(cpu: &BTreeMap<String, f64>) -> String {
    let mut parts: Vec<(&String, &f64)> = cpu.iter().filter(|(k, _)| *k != "total").collect();
    parts.sort_by(|a, b| b.1.total_cmp(a.1));
    let parts: Vec<String> = parts.iter().map(|(k, v)| format!("{k} {v:.0}")).collect();
    format!(
        "total {:.0} ({})",
        cpu.get("total").copied().unwrap_or_default(),
        parts.join(", ")
    )
}

fn ms(micros: u64) -> f64 {
    micros as f64 / 1000.0
}
