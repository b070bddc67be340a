//! Draws the results of the bench's scenarios (`cargo bench --bench scenarios`) as an SVG
//! chart.
//!
//! ```text
//! cargo run --manifest-path benches/chart/Cargo.toml [-- [OUT.svg] [RESULTS.tsv]]
//! ```
//!
//! Reads the tab-separated file the scenarios write (`scenario, contender, metric, value,
//! unit`; default `target/offthread-bench/results.tsv` at the repository's root, or under
//! `$CARGO_TARGET_DIR`, or `$OFFTHREAD_BENCH_TSV`: the rule of `benches/support/mod.rs`) and
//! writes `BENCHMARKS.svg` at the repository's root (or `OUT.svg`): one panel per scenario,
//! one group of horizontal bars per figure, one bar per contender, each group on its own
//! axis (its unit and scale), values written at the bars' ends. Figures a contender lacks
//! show as "no data"; malformed lines are skipped and counted.
//!
//! Why a crate of its own: it is a plain program using only `std`, run by hand after the
//! bench, and uses nothing of offthread's API. Under `examples/` it passed for an example of
//! the library; as a file under `benches/` Cargo would take it for a bench target.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// One line of the results file.
struct Row {
    scenario: String,
    contender: String,
    metric: String,
    value: f64,
    unit: String,
}

/// A scenario's figures in the order they first appear in the file.
struct Scenario {
    name: String,
    /// The contenders with at least one figure here, in legend order.
    contenders: Vec<String>,
    /// (metric, unit) in order of first appearance.
    metrics: Vec<(String, String)>,
}

/// The three contenders the bench compares, with their colours; others get [`EXTRA`] in
/// order of appearance.
const KNOWN: [(&str, &str); 3] = [
    ("offthread", "#1b9e77"),
    ("spawn_blocking", "#d95f02"),
    ("unblock", "#7570b3"),
];
const EXTRA: [&str; 6] = [
    "#66c2a5", "#e7298a", "#a6761d", "#666666", "#e6ab02", "#1f78b4",
];

/// Layout, in SVG user units.
const WIDTH: f64 = 980.0;
const LABEL_W: f64 = 300.0;
const BAR_X: f64 = LABEL_W + 10.0;
const BAR_W: f64 = 500.0;
const BAR_H: f64 = 13.0;
const BAR_GAP: f64 = 3.0;
const AXIS_H: f64 = 18.0;
const GROUP_GAP: f64 = 12.0;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "-h" || a == "--help") {
        eprintln!(
            "usage: cargo run --manifest-path benches/chart/Cargo.toml -- [OUT.svg] [RESULTS.tsv]"
        );
        return ExitCode::SUCCESS;
    }
    let root = repo_root();
    let out = args
        .first()
        .map_or_else(|| root.join("BENCHMARKS.svg"), PathBuf::from);
    let input = args
        .get(1)
        .map_or_else(|| default_results(&root), PathBuf::from);
    let text = match std::fs::read_to_string(&input) {
        Ok(t) => t,
        Err(e) => {
            eprintln!(
                "cannot read {}: {e}\nrun `cargo bench --bench scenarios` first (or give the \
                 file as the second argument)",
                input.display()
            );
            return ExitCode::FAILURE;
        }
    };
    let (rows, skipped) = parse(&text);
    let svg = render(&rows, &input);
    if let Err(e) = std::fs::write(&out, svg) {
        eprintln!("cannot write {}: {e}", out.display());
        return ExitCode::FAILURE;
    }
    eprintln!(
        "{} figures from {}{} -> {}",
        rows.len(),
        input.display(),
        if skipped > 0 {
            format!(" ({skipped} malformed lines skipped)")
        } else {
            String::new()
        },
        out.display()
    );
    ExitCode::SUCCESS
}

/// The repository's root, two levels above this crate.
fn repo_root() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    root.canonicalize().unwrap_or(root)
}

/// Where the scenarios write their results (the rule of `benches/support/mod.rs`).
fn default_results(root: &Path) -> PathBuf {
    if let Some(p) = std::env::var_os("OFFTHREAD_BENCH_TSV") {
        return p.into();
    }
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from);
    target.join("offthread-bench").join("results.tsv")
}

/// The rows of the file, and how many lines were malformed (the header, blank lines and
/// lines starting with `#` are neither).
fn parse(text: &str) -> (Vec<Row>, usize) {
    let mut rows = Vec::new();
    let mut skipped = 0;
    for line in text.lines() {
        if line.trim().is_empty() || line.starts_with('#') || line.starts_with("scenario\t") {
            continue;
        }
        let f: Vec<&str> = line.split('\t').collect();
        let value = f.get(3).and_then(|v| v.trim().parse::<f64>().ok());
        match (f.len(), value) {
            (5, Some(value)) if value.is_finite() && f[..3].iter().all(|s| !s.is_empty()) => {
                rows.push(Row {
                    scenario: f[0].to_owned(),
                    contender: f[1].to_owned(),
                    metric: f[2].to_owned(),
                    value,
                    unit: f[4].to_owned(),
                });
            }
            _ => skipped += 1,
        }
    }
    (rows, skipped)
}

/// Groups the rows by scenario, keeping the file's order.
fn scenarios(rows: &[Row]) -> Vec<Scenario> {
    let mut out: Vec<Scenario> = Vec::new();
    for r in rows {
        let i = match out.iter().position(|s| s.name == r.scenario) {
            Some(i) => i,
            None => {
                out.push(Scenario {
                    name: r.scenario.clone(),
                    contenders: Vec::new(),
                    metrics: Vec::new(),
                });
                out.len() - 1
            }
        };
        let s = &mut out[i];
        if !s.contenders.contains(&r.contender) {
            s.contenders.push(r.contender.clone());
        }
        let key = (r.metric.clone(), r.unit.clone());
        if !s.metrics.contains(&key) {
            s.metrics.push(key);
        }
    }
    for s in &mut out {
        s.contenders.sort_by_key(|c| legend_rank(c));
    }
    out
}

/// The three known contenders first, in their order, each followed by its variants (such as
/// "offthread (default pool)"), then the rest as they came (the sorts are stable).
fn legend_rank(name: &str) -> (usize, bool) {
    KNOWN
        .iter()
        .enumerate()
        .find_map(|(i, (k, _))| {
            let variant = name.strip_prefix(k)?.starts_with(" (");
            (name == *k || variant).then_some((i, variant))
        })
        .unwrap_or((KNOWN.len(), false))
}

/// Colours for every contender in the file: the known ones fixed, the rest from [`EXTRA`].
fn palette(rows: &[Row]) -> Vec<(String, &'static str)> {
    let mut names: Vec<String> = Vec::new();
    for r in rows {
        if !names.contains(&r.contender) {
            names.push(r.contender.clone());
        }
    }
    names.sort_by_key(|c| legend_rank(c));
    let mut extra = EXTRA.iter().cycle();
    names
        .into_iter()
        .map(|n| {
            let colour = KNOWN
                .iter()
                .find(|(k, _)| *k == n)
                .map(|(_, c)| *c)
                .or_else(|| extra.next().copied())
                .unwrap_or("#999999");
            (n, colour)
        })
        .collect()
}

/// The smallest of 1, 2, 2.5, 5 times a power of ten that is at least `x` (> 0).
fn nice_ceil(x: f64) -> f64 {
    if !x.is_finite() || x <= 0.0 {
        return 1.0;
    }
    let p = 10f64.powf(x.log10().floor());
    [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * p)
        .find(|v| *v >= x * (1.0 - 1e-12))
        .unwrap_or(10.0 * p)
}

/// A value with as many digits as its size calls for.
fn fmt_value(v: f64) -> String {
    let a = v.abs();
    // Thresholds a rounding step below the powers of ten, so 9.996 shows as 10.0, not 10.00.
    if v.fract() == 0.0 || a >= 99.95 {
        format!("{v:.0}")
    } else if a >= 9.995 {
        format!("{v:.1}")
    } else if a >= 0.0995 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The whole SVG document.
fn render(rows: &[Row], input: &Path) -> String {
    let scenarios = scenarios(rows);
    let colours = palette(rows);
    let colour = |name: &str| {
        colours
            .iter()
            .find(|(n, _)| n == name)
            .map_or("#999999", |(_, c)| *c)
    };
    let mut body = String::new();
    let mut y = 20.0;
    let _ = writeln!(
        body,
        r#"<text x="10" y="{y}" class="title">offthread pool benchmarks</text>"#
    );
    y += 18.0;
    let root = repo_root();
    let shown = input.strip_prefix(&root).unwrap_or(input);
    let _ = writeln!(
        body,
        r#"<text x="10" y="{y}" class="note">from {}: each scenario's figures come from one run of it, on one machine; compare bars within a group.</text>"#,
        esc(&shown.display().to_string())
    );
    y += 14.0;
    let _ = writeln!(
        body,
        r#"<text x="10" y="{y}" class="note">Each group of bars has its own axis, from 0 to a round number, in the unit named after the figure.</text>"#
    );
    // Legend.
    y += 20.0;
    let mut x = 10.0;
    for (name, c) in &colours {
        let _ = writeln!(
            body,
            r#"<rect x="{x}" y="{}" width="12" height="12" fill="{c}"/><text x="{}" y="{}" class="label">{}</text>"#,
            y - 10.0,
            x + 16.0,
            y,
            esc(name)
        );
        x += 30.0 + 7.0 * name.chars().count() as f64;
    }
    y += 16.0;
    if scenarios.is_empty() {
        y += 20.0;
        let _ = writeln!(
            body,
            r#"<text x="10" y="{y}" class="label">no figures in the results file: run `cargo bench --bench scenarios`</text>"#
        );
        y += 10.0;
    }
    for s in &scenarios {
        y += 22.0;
        let _ = writeln!(
            body,
            r#"<text x="10" y="{y}" class="scenario">{}</text>"#,
            esc(&s.name)
        );
        let _ = writeln!(
            body,
            r#"<line x1="10" y1="{0}" x2="{1}" y2="{0}" class="rule"/>"#,
            y + 5.0,
            WIDTH - 10.0
        );
        y += 14.0;
        for (metric, unit) in &s.metrics {
            let values: Vec<Option<f64>> = s
                .contenders
                .iter()
                .map(|c| {
                    rows.iter()
                        .find(|r| {
                            r.scenario == s.name
                                && r.contender == *c
                                && r.metric == *metric
                                && r.unit == *unit
                        })
                        .map(|r| r.value)
                })
                .collect();
            let max = values.iter().flatten().fold(0f64, |m, v| m.max(*v));
            let min = values.iter().flatten().fold(0f64, |m, v| m.min(*v));
            let hi = if max > 0.0 { nice_ceil(max) } else { 0.0 };
            let lo = if min < 0.0 { -nice_ceil(-min) } else { 0.0 };
            let (lo, hi) = if hi - lo > 0.0 { (lo, hi) } else { (0.0, 1.0) };
            let at = |v: f64| BAR_X + (v - lo) / (hi - lo) * BAR_W;
            let top = y;
            let group_h = s.contenders.len() as f64 * (BAR_H + BAR_GAP);
            let label = if unit.is_empty() || metric.contains(unit.as_str()) {
                metric.clone()
            } else {
                format!("{metric} ({unit})")
            };
            let _ = writeln!(
                body,
                r#"<text x="{}" y="{}" class="label" text-anchor="end">{}</text>"#,
                LABEL_W,
                top + group_h / 2.0 + 4.0,
                esc(&label)
            );
            for (c, v) in s.contenders.iter().zip(&values) {
                let mid = y + BAR_H / 2.0 + 4.0;
                match v {
                    Some(v) => {
                        let (a, b) = (at(0.0), at(*v));
                        let _ = writeln!(
                            body,
                            r#"<rect x="{:.1}" y="{y:.1}" width="{:.1}" height="{BAR_H}" fill="{}"><title>{}: {} {}</title></rect>"#,
                            a.min(b),
                            (b - a).abs().max(0.5),
                            colour(c),
                            esc(c),
                            fmt_value(*v),
                            esc(unit)
                        );
                        let _ = writeln!(
                            body,
                            r#"<text x="{:.1}" y="{mid:.1}" class="value">{} {}</text>"#,
                            a.max(b) + 4.0,
                            fmt_value(*v),
                            esc(unit)
                        );
                    }
                    None => {
                        let _ = writeln!(
                            body,
                            r#"<text x="{:.1}" y="{mid:.1}" class="missing">{}: no data</text>"#,
                            BAR_X + 4.0,
                            esc(c)
                        );
                    }
                }
                y += BAR_H + BAR_GAP;
            }
            // The group's axis: a line with ticks at both ends, at zero and half-way.
            let ay = y + 2.0;
            let _ = writeln!(
                body,
                r#"<line x1="{BAR_X}" y1="{ay}" x2="{}" y2="{ay}" class="axis"/>"#,
                BAR_X + BAR_W
            );
            let mut ticks = vec![lo, hi];
            if lo < 0.0 {
                ticks.push(0.0);
            } else {
                ticks.push(hi / 2.0);
            }
            for t in ticks {
                let tx = at(t);
                let _ = writeln!(
                    body,
                    r#"<line x1="{tx:.1}" y1="{ay}" x2="{tx:.1}" y2="{}" class="axis"/><text x="{tx:.1}" y="{}" class="tick" text-anchor="middle">{}</text>"#,
                    ay + 3.0,
                    ay + 12.0,
                    fmt_value(t)
                );
            }
            let _ = writeln!(
                body,
                r#"<line x1="{0:.1}" y1="{1}" x2="{0:.1}" y2="{2}" class="zero"/>"#,
                at(0.0),
                top - 1.0,
                ay
            );
            y += AXIS_H + GROUP_GAP;
        }
    }
    let height = y + 10.0;
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="sans-serif">"#
    );
    svg.push_str(
        "<style>\
         .title{font-size:18px;font-weight:bold}\
         .scenario{font-size:15px;font-weight:bold}\
         .note{font-size:11px;fill:#555}\
         .label{font-size:12px}\
         .value{font-size:11px}\
         .tick{font-size:9px;fill:#555}\
         .missing{font-size:11px;fill:#999;font-style:italic}\
         .axis{stroke:#888;stroke-width:1}\
         .zero{stroke:#444;stroke-width:1}\
         .rule{stroke:#ccc;stroke-width:1}\
         </style>\n",
    );
    let _ = writeln!(
        svg,
        r#"<rect width="{WIDTH}" height="{height}" fill="white"/>"#
    );
    svg.push_str(&body);
    svg.push_str("</svg>\n");
    svg
}
