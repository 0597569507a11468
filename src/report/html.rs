//! The report page: inline SVG charts drawn here, tables, and the figures embedded as JSON.
//! Everything that comes from the job (custom_ids, error messages, key fingerprints, paths) is
//! escaped; the JSON block is escaped so no string in it can close the `<script>` element.
//!
//! It must not query the state: it draws only what [`super::data`] read.

use super::data::{Histogram, ReportData, Series};
use super::sparkline::sparkline;
use std::fmt::Write as _;

/// Colours for series, in order.
pub const PALETTE: &[&str] = &[
    "#2563eb", "#dc2626", "#16a34a", "#d97706", "#7c3aed", "#0891b2", "#db2777", "#65a30d",
    "#4b5563",
];

const WIDTH: f64 = 1120.0;
const HEIGHT: f64 = 220.0;
const LEFT: f64 = 64.0;
const RIGHT: f64 = 16.0;
const TOP: f64 = 12.0;
const BOTTOM: f64 = 28.0;

/// The page's style sheet (shared with the gateway's live page).
pub const STYLE: &str = "
body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;margin:0;background:#f8fafc;color:#0f172a}
main{max-width:1180px;margin:0 auto;padding:24px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:16px;margin:28px 0 8px}
.meta{color:#475569;font-size:13px}.meta code{background:#e2e8f0;padding:1px 4px;border-radius:3px}
.tiles{display:grid;grid-template-columns:repeat(auto-fill,minmax(150px,1fr));gap:10px;margin:16px 0}
.tile{background:#fff;border:1px solid #e2e8f0;border-radius:8px;padding:10px 12px}
.tile .v{font-size:20px;font-weight:600}.tile .l{color:#64748b;font-size:12px}
.tile.bad .v{color:#dc2626}.spark{font-family:monospace;color:#2563eb;letter-spacing:-1px}
.card{background:#fff;border:1px solid #e2e8f0;border-radius:8px;padding:12px 14px;margin:12px 0}
.card h3{font-size:14px;margin:0 0 6px}
.legend{font-size:12px;color:#334155;margin:0 0 4px}.legend span{margin-right:14px;white-space:nowrap}
.legend i{display:inline-block;width:10px;height:10px;border-radius:2px;margin-right:4px;vertical-align:-1px}
svg{display:block;width:100%;height:auto}svg text{font:11px system-ui,sans-serif;fill:#64748b}
.grid{stroke:#e2e8f0}.axis{stroke:#94a3b8}.limit{stroke-dasharray:6 4;stroke-width:1.5}
table{border-collapse:collapse;width:100%;font-size:13px;background:#fff}
th,td{text-align:left;padding:5px 8px;border-bottom:1px solid #e2e8f0;vertical-align:top}
th{background:#f1f5f9;cursor:pointer;user-select:none}td.n,th.n{text-align:right}
td.msg{max-width:560px;word-break:break-word;color:#334155}code{font-size:12px}
.bar{background:#dbeafe;height:10px;border-radius:2px}.empty{color:#64748b;font-style:italic}
.ok{color:#16a34a}.removed{color:#dc2626}
";

/// HTML-escape text for element content and quoted attribute values.
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// JSON for a `<script type="application/json">` block: `<`, `>` and `&` are written as
/// `\u` escapes, so no string can end the element or open a comment.
pub fn json_for_script(value: &impl serde::Serialize) -> String {
    let text = serde_json::to_string(value).unwrap_or_else(|_| "null".to_string());
    text.replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
}

pub use crate::numbers::compact;

/// A duration in seconds as `42s`, `3m20s`, `1h05m`.
pub fn duration_label(secs: f64) -> String {
    let s = secs.round() as i64;
    if s < 60 {
        format!("{s}s")
    } else if s < 3600 {
        if s % 60 == 0 {
            format!("{}m", s / 60)
        } else {
            format!("{}m{:02}s", s / 60, s % 60)
        }
    } else {
        format!("{}h{:02}m", s / 3600, (s % 3600) / 60)
    }
}

/// A round axis maximum at or above `max`.
fn nice_max(max: f64) -> f64 {
    if max <= 0.0 || !max.is_finite() {
        return 1.0;
    }
    let magnitude = 10f64.powf(max.log10().floor());
    for step in [1.0, 1.2, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0] {
        if step * magnitude >= max {
            return step * magnitude;
        }
    }
    10.0 * magnitude
}

/// One line of a line chart.
pub struct Line<'a> {
    /// Legend name.
    pub name: String,
    /// Colour.
    pub color: &'a str,
    /// One value per bin (`None`: no data, the line breaks).
    pub values: Vec<Option<f64>>,
}

/// A horizontal reference line (a limit).
pub struct Limit {
    /// Legend name.
    pub name: String,
    /// Its value.
    pub value: f64,
}

fn legend(items: &[(String, &str, bool)]) -> String {
    let mut out = String::from("<div class=\"legend\">");
    for (name, color, dashed) in items {
        let style = if *dashed {
            format!("background:repeating-linear-gradient(90deg,{color} 0 4px,transparent 4px 6px)")
        } else {
            format!("background:{color}")
        };
        let _ = write!(out, "<span><i style=\"{style}\"></i>{}</span>", esc(name));
    }
    out.push_str("</div>");
    out
}

/// The frame of a time chart: grid, y labels, x labels in time since the start (round steps).
/// Returns the y scale's maximum.
fn frame(out: &mut String, bins: usize, bin_secs: f64, max: f64, counts: bool) -> f64 {
    let top = if counts {
        // Whole numbers on the four grid lines.
        (nice_max(max).max(4.0) / 4.0).ceil() * 4.0
    } else {
        nice_max(max)
    };
    let _ = write!(
        out,
        "<svg viewBox=\"0 0 {WIDTH} {HEIGHT}\" role=\"img\" preserveAspectRatio=\"none\">"
    );
    let plot_h = HEIGHT - TOP - BOTTOM;
    for i in 0..=4 {
        let v = top * f64::from(i) / 4.0;
        let y = TOP + plot_h - plot_h * f64::from(i) / 4.0;
        let _ = write!(
            out,
            "<line class=\"grid\" x1=\"{LEFT}\" x2=\"{}\" y1=\"{y:.1}\" y2=\"{y:.1}\"/>\
             <text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            WIDTH - RIGHT,
            LEFT - 6.0,
            y + 4.0,
            compact(v),
        );
    }
    let span = bins as f64 * bin_secs;
    let step = [
        1.0, 2.0, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0, 7200.0,
        21600.0, 43200.0, 86400.0,
    ]
    .into_iter()
    .find(|s| span / s <= 8.0)
    .unwrap_or(span / 8.0);
    let mut t = 0.0;
    while t <= span + 1e-9 {
        let x = x_of(t / bin_secs, bins);
        let _ = write!(
            out,
            "<line class=\"grid\" x1=\"{x:.1}\" x2=\"{x:.1}\" y1=\"{}\" y2=\"{}\"/>\
             <text x=\"{x:.1}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
            TOP + plot_h,
            TOP + plot_h + 4.0,
            HEIGHT - 8.0,
            duration_label(t)
        );
        t += step;
    }
    let _ = write!(
        out,
        "<line class=\"axis\" x1=\"{LEFT}\" x2=\"{}\" y1=\"{}\" y2=\"{}\"/>",
        WIDTH - RIGHT,
        TOP + plot_h,
        TOP + plot_h
    );
    top
}

fn x_of(i: f64, bins: usize) -> f64 {
    LEFT + (WIDTH - LEFT - RIGHT) * i / bins.max(1) as f64
}

fn y_of(v: f64, top: f64) -> f64 {
    let plot_h = HEIGHT - TOP - BOTTOM;
    TOP + plot_h - plot_h * (v / top).clamp(0.0, 1.05)
}

/// A line chart over time bins, with dashed limit lines.
pub fn line_chart(title: &str, bin_secs: f64, lines: &[Line<'_>], limits: &[Limit]) -> String {
    let bins = lines.iter().map(|l| l.values.len()).max().unwrap_or(0);
    let mut out = format!("<div class=\"card\"><h3>{}</h3>", esc(title));
    let mut items: Vec<(String, &str, bool)> = lines
        .iter()
        .map(|l| (l.name.clone(), l.color, false))
        .collect();
    items.extend(limits.iter().map(|l| (l.name.clone(), "#dc2626", true)));
    out.push_str(&legend(&items));
    if bins == 0 {
        out.push_str("<p class=\"empty\">no data</p></div>");
        return out;
    }
    let max = lines
        .iter()
        .flat_map(|l| l.values.iter().flatten().copied())
        .chain(limits.iter().map(|l| l.value))
        .fold(0.0, f64::max);
    let top = frame(&mut out, bins, bin_secs, max * 1.05, false);
    for limit in limits {
        let y = y_of(limit.value, top);
        let _ = write!(
            out,
            "<line class=\"limit\" stroke=\"#dc2626\" x1=\"{LEFT}\" x2=\"{}\" y1=\"{y:.1}\" y2=\"{y:.1}\"><title>{}: {}</title></line>",
            WIDTH - RIGHT,
            esc(&limit.name),
            compact(limit.value)
        );
    }
    for line in lines {
        let mut d = String::new();
        let mut pen_down = false;
        for (i, v) in line.values.iter().enumerate() {
            match v {
                Some(v) => {
                    let x = x_of(i as f64 + 0.5, bins);
                    let _ = write!(
                        d,
                        "{}{x:.1},{:.1} ",
                        if pen_down { "L" } else { "M" },
                        y_of(*v, top)
                    );
                    pen_down = true;
                }
                None => pen_down = false,
            }
        }
        let _ = write!(
            out,
            "<path d=\"{}\" fill=\"none\" stroke=\"{}\" stroke-width=\"1.8\" stroke-linejoin=\"round\"><title>{}</title></path>",
            d.trim_end(),
            line.color,
            esc(&line.name)
        );
    }
    out.push_str("</svg></div>");
    out
}

/// A stacked bar chart of counts over time bins.
pub fn stacked_bars(title: &str, bin_secs: f64, series: &[(String, &str, &[u64])]) -> String {
    let bins = series.iter().map(|s| s.2.len()).max().unwrap_or(0);
    let mut out = format!("<div class=\"card\"><h3>{}</h3>", esc(title));
    let items: Vec<(String, &str, bool)> = series
        .iter()
        .map(|(name, color, values)| {
            let total: u64 = values.iter().sum();
            (format!("{name} ({total})"), *color, false)
        })
        .collect();
    out.push_str(&legend(&items));
    let sums: Vec<u64> = (0..bins)
        .map(|i| {
            series
                .iter()
                .map(|s| s.2.get(i).copied().unwrap_or(0))
                .sum()
        })
        .collect();
    let max = sums.iter().copied().max().unwrap_or(0);
    if bins == 0 || max == 0 {
        out.push_str("<p class=\"empty\">none</p></div>");
        return out;
    }
    let top = frame(&mut out, bins, bin_secs, max as f64, true);
    let w = (WIDTH - LEFT - RIGHT) / bins as f64;
    for i in 0..bins {
        let mut base = 0u64;
        for (name, color, values) in series {
            let v = values.get(i).copied().unwrap_or(0);
            if v == 0 {
                continue;
            }
            let (y0, y1) = (y_of(base as f64, top), y_of((base + v) as f64, top));
            let _ = write!(
                out,
                "<rect x=\"{:.1}\" y=\"{y1:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{color}\"><title>{} at {}: {v}</title></rect>",
                x_of(i as f64, bins) + w * 0.1,
                (w * 0.8).max(0.5),
                (y0 - y1).max(0.5),
                esc(name),
                duration_label(i as f64 * bin_secs)
            );
            base += v;
        }
    }
    out.push_str("</svg></div>");
    out
}

/// The latency histogram as bars with bucket labels.
fn histogram(h: &Histogram) -> String {
    let mut out = String::from("<div class=\"card\"><h3>Latency histogram (attempts)</h3>");
    let max = h.counts.iter().copied().max().unwrap_or(0);
    if max == 0 {
        out.push_str("<p class=\"empty\">no attempts</p></div>");
        return out;
    }
    let top = nice_max(max as f64);
    let n = h.counts.len();
    let _ = write!(
        out,
        "<svg viewBox=\"0 0 {WIDTH} {HEIGHT}\" role=\"img\" preserveAspectRatio=\"none\">"
    );
    let w = (WIDTH - LEFT - RIGHT) / n as f64;
    for (i, count) in h.counts.iter().enumerate() {
        let label = match (i.checked_sub(1).map(|j| h.edges_ms[j]), h.edges_ms.get(i)) {
            (_, Some(hi)) => format!("≤{}", ms_label(*hi)),
            (Some(lo), None) => format!(">{}", ms_label(lo)),
            (None, None) => "all".to_string(),
        };
        let x = LEFT + w * i as f64;
        let y = y_of(*count as f64, top);
        let _ = write!(
            out,
            "<rect x=\"{:.1}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"#2563eb\"><title>{label}: {count}</title></rect>\
             <text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">{label}</text>\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
            x + w * 0.1,
            w * 0.8,
            (HEIGHT - BOTTOM - y).max(0.0),
            x + w / 2.0,
            HEIGHT - 8.0,
            x + w / 2.0,
            y - 4.0,
            if *count > 0 {
                compact(*count as f64)
            } else {
                String::new()
            }
        );
    }
    let _ = write!(
        out,
        "<line class=\"axis\" x1=\"{LEFT}\" x2=\"{}\" y1=\"{}\" y2=\"{}\"/></svg></div>",
        WIDTH - RIGHT,
        HEIGHT - BOTTOM,
        HEIGHT - BOTTOM
    );
    out
}

fn ms_label(ms: u64) -> String {
    if ms >= 1000 && ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else if ms >= 1000 {
        format!("{:.1}s", ms as f64 / 1000.0)
    } else {
        format!("{ms}ms")
    }
}

fn when(ms: i64) -> String {
    crate::time::local_time(ms)
}

fn tile(out: &mut String, value: &str, label: &str, bad: bool) {
    let _ = write!(
        out,
        "<div class=\"tile{}\"><div class=\"v\">{value}</div><div class=\"l\">{}</div></div>",
        if bad { " bad" } else { "" },
        esc(label)
    );
}

fn opt_ms(v: Option<u64>) -> String {
    v.map_or_else(|| "–".to_string(), ms_label)
}

fn charts(out: &mut String, s: &Series, d: &ReportData) {
    let bin_secs = s.bin_ms as f64 / 1000.0;
    let bin = duration_label(bin_secs);
    out.push_str("<h2>Rate against the limits</h2>");
    let mut lines = vec![Line {
        name: "all keys".into(),
        color: PALETTE[0],
        values: s.requests_per_s.iter().map(|v| Some(*v)).collect(),
    }];
    if s.requests_per_s_by_key.len() > 1 {
        for (i, (key, values)) in s.requests_per_s_by_key.iter().enumerate() {
            lines.push(Line {
                name: key.clone(),
                color: PALETTE[(i + 2) % PALETTE.len()],
                values: values.iter().map(|v| Some(*v)).collect(),
            });
        }
    }
    let kind = if d.limits.configured {
        "configured"
    } else {
        "learned"
    };
    let limits: Vec<Limit> = d
        .limits
        .requests_per_min
        .map(|rpm| Limit {
            name: format!("limit {} req/s ({kind})", compact(rpm as f64 / 60.0)),
            value: rpm as f64 / 60.0,
        })
        .into_iter()
        .collect();
    out.push_str(&line_chart(
        &format!("Requests sent per second ({bin} bins)"),
        bin_secs,
        &lines,
        &limits,
    ));
    if let Some(tokens) = &s.tokens_per_min {
        let limits: Vec<Limit> = d
            .limits
            .tokens_per_min
            .map(|tpm| Limit {
                name: format!("limit {} tok/min ({kind})", compact(tpm as f64)),
                value: tpm as f64,
            })
            .into_iter()
            .collect();
        out.push_str(&line_chart(
            "Tokens admitted per minute (the quota's charge: settled usage, the estimate until then)",
                bin_secs,
            &[Line {
                name: "tokens/min".into(),
                color: PALETTE[2],
                values: tokens.iter().map(|v| Some(*v)).collect(),
            }],
            &limits,
        ));
    }
    out.push_str("<h2>What went wrong, over time</h2>");
    let mut series: Vec<(String, &str, &[u64])> =
        vec![("429 received".to_string(), PALETTE[1], &s.rate_limited[..])];
    out.push_str(&stacked_bars(
        &format!("429 answers ({bin} bins)"),
        bin_secs,
        &series,
    ));
    series.clear();
    for (i, (cause, values)) in s.retries_by_cause.iter().enumerate() {
        series.push((cause.clone(), PALETTE[(i + 3) % PALETTE.len()], &values[..]));
    }
    out.push_str(&stacked_bars("Retries by cause", bin_secs, &series));
    series.clear();
    for (i, (code, values)) in s.failures_by_code.iter().enumerate() {
        series.push((code.clone(), PALETTE[(i + 1) % PALETTE.len()], &values[..]));
    }
    out.push_str(&stacked_bars("Final failures by code", bin_secs, &series));
    if !d.unsent_failures.is_empty() {
        let count: u64 = d.unsent_failures.values().sum();
        let codes: Vec<String> = d
            .unsent_failures
            .iter()
            .map(|(code, n)| format!("{} × {n}", esc(code)))
            .collect();
        let _ = write!(
            out,
            "<p class=\"meta\">not in this chart: {count} failed before being sent ({}), so no attempt marks their time; the failures table lists them</p>",
            codes.join(", ")
        );
    }
    out.push_str("<h2>Latency and concurrency</h2>");
    let pct = |v: &[Option<u64>]| v.iter().map(|x| x.map(|x| x as f64)).collect();
    out.push_str(&line_chart(
        &format!("Attempt latency percentiles, ms ({bin} bins, by end time)"),
        bin_secs,
        &[
            Line {
                name: "p50".into(),
                color: PALETTE[0],
                values: pct(&s.latency_p50_ms),
            },
            Line {
                name: "p90".into(),
                color: PALETTE[3],
                values: pct(&s.latency_p90_ms),
            },
            Line {
                name: "p99".into(),
                color: PALETTE[1],
                values: pct(&s.latency_p99_ms),
            },
        ],
        &[],
    ));
    out.push_str(&histogram(&d.latency_histogram));
    out.push_str(&line_chart(
        &format!("Requests in flight (mean over each {bin} bin)"),
        bin_secs,
        &[Line {
            name: "in flight".into(),
            color: PALETTE[4],
            values: s.in_flight.iter().map(|v| Some(*v)).collect(),
        }],
        &[],
    ));
}

fn keys_table(out: &mut String, d: &ReportData) {
    out.push_str("<h2>Keys</h2>");
    if d.keys.is_empty() {
        out.push_str("<p class=\"empty\">no key sent anything</p>");
        return;
    }
    out.push_str(
        "<table class=\"sortable\" id=\"keys\"><thead><tr><th>key</th><th class=\"n\">attempts</th>\
         <th>share</th><th class=\"n\">429s (pauses)</th><th class=\"n\">waited on a pause</th>\
         <th class=\"n\">tokens used</th><th class=\"n\">limit req/min</th><th class=\"n\">limit tok/min</th>\
         <th>rotation</th></tr></thead><tbody>",
    );
    for k in &d.keys {
        let limit = |v: Option<u64>| {
            v.map_or_else(
                || "–".to_string(),
                |v| {
                    format!(
                        "{} ({})",
                        compact(v as f64),
                        if k.configured {
                            "configured"
                        } else {
                            "learned"
                        }
                    )
                },
            )
        };
        let rotation = match &k.removed {
            Some(reason) => format!(
                "<span class=\"removed\">removed{}: {}</span>",
                k.removed_at
                    .map(|t| format!(" at {}", esc(&when(t))))
                    .unwrap_or_default(),
                esc(reason)
            ),
            None => "<span class=\"ok\">in rotation</span>".to_string(),
        };
        let _ = write!(
            out,
            "<tr><td><code>{}</code></td><td class=\"n\">{}</td>\
             <td><div class=\"bar\" style=\"width:{:.0}px\" title=\"{:.1}%\"></div>{:.1}%</td>\
             <td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>\
             <td class=\"n\">{}</td><td>{rotation}</td></tr>",
            esc(&k.key),
            k.attempts,
            k.share * 120.0,
            k.share * 100.0,
            k.share * 100.0,
            k.rate_limited,
            k.paused_attempts,
            compact(k.tokens_used as f64),
            limit(k.requests_per_min),
            limit(k.tokens_per_min),
        );
    }
    out.push_str("</tbody></table>");
}

fn failures_table(out: &mut String, d: &ReportData) {
    let _ = write!(out, "<h2>Final failures ({})</h2>", d.failures_total);
    if d.failures.is_empty() {
        out.push_str("<p class=\"empty\">none: every request that finished succeeded</p>");
        return;
    }
    if (d.failures.len() as u64) < d.failures_total {
        let _ = write!(
            out,
            "<p class=\"meta\">the first {} in input order; <code>paceline status</code> and the output file have them all</p>",
            d.failures.len()
        );
    }
    out.push_str(
        "<table class=\"sortable\" id=\"failures\"><thead><tr><th>custom_id</th><th>code</th>\
         <th>message</th><th class=\"n\">attempts</th></tr></thead><tbody>",
    );
    for f in &d.failures {
        let _ = write!(
            out,
            "<tr><td><code>{}</code></td><td>{}</td><td class=\"msg\">{}</td><td class=\"n\">{}</td></tr>",
            esc(&f.custom_id),
            esc(f.code.code()),
            esc(&f.message),
            f.attempts
        );
    }
    out.push_str("</tbody></table>");
}

fn slowest_table(out: &mut String, d: &ReportData) {
    out.push_str("<h2>Slowest attempts</h2>");
    if d.slowest.is_empty() {
        out.push_str("<p class=\"empty\">no attempts</p>");
        return;
    }
    out.push_str(
        "<table class=\"sortable\" id=\"slowest\"><thead><tr><th>custom_id</th><th class=\"n\">attempt</th>\
         <th class=\"n\">latency</th><th class=\"n\">status</th><th>key</th><th>sent</th></tr></thead><tbody>",
    );
    for s in &d.slowest {
        let _ = write!(
            out,
            "<tr><td><code>{}</code></td><td class=\"n\">{}</td><td class=\"n\" data-v=\"{}\">{}</td>\
             <td class=\"n\">{}</td><td><code>{}</code></td><td>{}</td></tr>",
            esc(&s.custom_id),
            s.attempt,
            s.latency_ms,
            ms_label(s.latency_ms),
            s.status
                .map_or_else(|| "no answer".to_string(), |c| c.to_string()),
            esc(&s.key),
            esc(&when(s.sent_at))
        );
    }
    out.push_str("</tbody></table>");
}

/// First script of a page: any uncaught error or console error is recorded on the root
/// element (`data-js-errors`), so a headless browser's DOM dump shows it.
pub const ERROR_CATCHER: &str = r#"
(function () {
  var root = document.documentElement;
  function note(text) {
    root.setAttribute("data-js-errors", (root.getAttribute("data-js-errors") || "") + String(text) + "\n");
  }
  window.addEventListener("error", function (e) { note(e.message || e); });
  window.addEventListener("unhandledrejection", function (e) { note(e.reason); });
  var original = console.error;
  console.error = function () { note(Array.prototype.join.call(arguments, " ")); original.apply(console, arguments); };
})();
"#;

/// The small script: click a table header to sort by that column.
pub const SORT_SCRIPT: &str = r#"
(function () {
  function key(cell) {
    var v = cell.getAttribute("data-v") || cell.textContent.trim();
    var n = parseFloat(v.replace(/[^0-9.\-]/g, ""));
    return /^[-0-9.,]+\s*(ms|s|%|k|M)?/.test(v) && !isNaN(n) ? n : v.toLowerCase();
  }
  document.querySelectorAll("table.sortable").forEach(function (table) {
    table.querySelectorAll("th").forEach(function (th, col) {
      th.addEventListener("click", function () {
        var body = table.tBodies[0];
        var dir = th.getAttribute("data-dir") === "asc" ? -1 : 1;
        th.setAttribute("data-dir", dir === 1 ? "asc" : "desc");
        Array.prototype.slice.call(body.rows)
          .sort(function (a, b) {
            var x = key(a.cells[col]), y = key(b.cells[col]);
            return (x < y ? -1 : x > y ? 1 : 0) * dir;
          })
          .forEach(function (row) { body.appendChild(row); });
      });
    });
  });
  var data = JSON.parse(document.getElementById("paceline-data").textContent);
  document.body.setAttribute("data-ready", String(data.version));
})();
"#;

/// The whole page.
pub fn render(d: &ReportData) -> String {
    let mut out = String::with_capacity(64 * 1024);
    let j = &d.job;
    let _ = write!(
        out,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>paceline report: {}</title><style>{STYLE}</style><script>{ERROR_CATCHER}</script></head><body><main>\
         <h1>paceline report</h1><div class=\"meta\">input <code>{}</code> · output <code>{}</code> · state <code>{}</code></div>",
        esc(&j.output),
        esc(&j.input),
        esc(&j.output),
        esc(&j.state_path),
    );
    let t = &d.totals;
    let span = match (t.start_ms, t.end_ms) {
        (Some(a), Some(b)) => Some((b - a).max(0) as f64 / 1000.0),
        _ => None,
    };
    let _ = write!(
        out,
        "<div class=\"meta\">began {} · {} run{} · {}</div>",
        esc(&when(j.created_at)),
        j.runs,
        if j.runs == 1 { "" } else { "s" },
        esc(&phase_text(d))
    );
    out.push_str("<div class=\"tiles\">");
    tile(
        &mut out,
        &format!("{}/{}", j.done + j.failed, j.total),
        "requests finished",
        false,
    );
    tile(&mut out, &j.done.to_string(), "succeeded", false);
    tile(
        &mut out,
        &j.failed.to_string(),
        "failed for good",
        j.failed > 0,
    );
    tile(&mut out, &t.attempts.to_string(), "attempts", false);
    tile(
        &mut out,
        &t.rate_limited.to_string(),
        "429s received",
        false,
    );
    tile(&mut out, &t.retries.to_string(), "retries", false);
    if let Some(span) = span {
        tile(
            &mut out,
            &duration_label(span),
            "first send to last answer",
            false,
        );
    }
    // The rate and budget use of the latest run, as the summary and `status` print them.
    if let Some(f) = &d.job.figures {
        let which = if d.job.runs > 1 {
            format!(" (run {})", f.run)
        } else {
            String::new()
        };
        tile(
            &mut out,
            &format!("{:.1}", f.requests_per_s),
            &format!("req/s achieved{which}"),
            false,
        );
        for u in &f.budget {
            tile(
                &mut out,
                &esc(&crate::numbers::percent(u.percent)),
                &format!("of the {} budget of {}", u.name(), u.allowance_text()),
                false,
            );
        }
    }
    tile(
        &mut out,
        &t.peak_in_flight.to_string(),
        "peak in flight",
        false,
    );
    tile(
        &mut out,
        &format!(
            "{} / {}",
            opt_ms(t.latency_p50_ms),
            opt_ms(t.latency_p99_ms)
        ),
        "latency p50 / p99",
        false,
    );
    tile(
        &mut out,
        &format!(
            "<span class=\"spark\">{}</span>",
            sparkline(&d.series.requests_per_s, 24)
        ),
        "rate over the job",
        false,
    );
    out.push_str("</div>");
    charts(&mut out, &d.series, d);
    keys_table(&mut out, d);
    failures_table(&mut out, d);
    slowest_table(&mut out, d);
    let _ = write!(
        out,
        "<p class=\"meta\" style=\"margin-top:24px\">made by paceline {} · times are since the first request was sent ({}) · keys are shown as fingerprints only</p></main>\
         <script type=\"application/json\" id=\"paceline-data\">{}</script><script>{SORT_SCRIPT}</script></body></html>",
        env!("CARGO_PKG_VERSION"),
        esc(&t.start_ms.map(when).unwrap_or_else(|| "–".into())),
        json_for_script(d),
    );
    out.push('\n');
    out
}

fn phase_text(d: &ReportData) -> String {
    use crate::store::report::Phase;
    match &d.job.phase {
        Phase::Running { holder, .. } => format!("running now ({holder})"),
        Phase::Finished => "finished".to_string(),
        Phase::Resumable { last_run } => format!("resumable (last run: {last_run})"),
        Phase::Empty => "no job recorded".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_script_ends() {
        assert_eq!(
            esc("<a href='x'>&\"</a>"),
            "&lt;a href=&#39;x&#39;&gt;&amp;&quot;&lt;/a&gt;"
        );
        let json = json_for_script(&serde_json::json!({"id": "</script><!--&"}));
        assert!(!json.contains('<') && !json.contains('>') && !json.contains('&'));
        let back: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(back["id"], "</script><!--&");
    }

    #[test]
    fn labels() {
        assert_eq!(duration_label(42.0), "42s");
        assert_eq!(duration_label(200.0), "3m20s");
        assert_eq!(duration_label(3900.0), "1h05m");
        assert_eq!(nice_max(87.0), 100.0);
        assert_eq!(nice_max(0.0), 1.0);
        assert_eq!(compact(1234.0), "1.2k");
    }
}
