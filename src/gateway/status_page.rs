//! The live status page of `paceline serve`: `GET /status` (and `GET /`) is a small page that
//! fetches `GET /status.json` from the same origin every two seconds and draws the last minutes:
//! queue depth, time waited, in flight, and the rate against the limit per upstream key and per
//! client. Keys appear only as fingerprints; nothing secret is on the page or in the JSON.
//!
//! The figures come from a ring of per-second samples ([`LiveStatus`]): the engine's attempt
//! records (per key), each client's answered and refused requests, and a sampler that reads
//! the queue and the in-flight count once a second.
//!
//! It must not know the routes or the store; of the report it shares only the page's stylesheet and
//! error script ([`crate::report::html`]).

use super::App;
use crate::engine::AttemptRecord;
use crate::quota::Dimension;
use crate::quota::budget::Budget;
use crate::report::html::{ERROR_CATCHER, STYLE};
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Seconds of history kept and shown.
pub const WINDOW_SECS: usize = 300;

/// What happened in one second.
#[derive(Debug, Clone, Default)]
struct Second {
    /// Seconds since the epoch.
    t: u64,
    attempts: BTreeMap<Arc<str>, u64>,
    rate_limited: BTreeMap<Arc<str>, u64>,
    requests: BTreeMap<Arc<str>, u64>,
    refused: BTreeMap<Arc<str>, u64>,
    wait_ms_sum: u64,
    waits: u64,
    queue: Option<u64>,
    in_flight: Option<u64>,
}

/// The ring of per-second samples behind the live page.
#[derive(Debug, Default)]
pub struct LiveStatus {
    seconds: Mutex<VecDeque<Second>>,
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn bump(map: &mut BTreeMap<Arc<str>, u64>, name: &str) {
    match map.get_mut(name) {
        Some(n) => *n += 1,
        None => {
            map.insert(name.into(), 1);
        }
    }
}

impl LiveStatus {
    fn lock(&self) -> MutexGuard<'_, VecDeque<Second>> {
        self.seconds.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Change the sample of the current second.
    fn now(&self, change: impl FnOnce(&mut Second)) {
        let t = now_secs();
        let mut seconds = self.lock();
        if seconds.back().is_none_or(|s| s.t < t) {
            seconds.push_back(Second {
                t,
                ..Second::default()
            });
            while seconds.len() > WINDOW_SECS {
                seconds.pop_front();
            }
        }
        if let Some(last) = seconds.back_mut() {
            change(last);
        }
    }

    /// One upstream attempt ended.
    pub fn attempt(&self, record: &AttemptRecord) {
        self.now(|s| {
            bump(&mut s.attempts, &record.key);
            if record.status == Some(429) {
                bump(&mut s.rate_limited, &record.key);
            }
        });
    }

    /// A client's request was answered by the engine after waiting `waited`.
    pub fn request(&self, client: &str, waited: Duration) {
        self.now(|s| {
            bump(&mut s.requests, client);
            s.wait_ms_sum += waited.as_millis() as u64;
            s.waits += 1;
        });
    }

    /// A client's request was refused by its own limit.
    pub fn refused(&self, client: &str) {
        self.now(|s| bump(&mut s.refused, client));
    }

    /// The queue depth and the requests in flight now.
    pub fn sample(&self, queue: usize, in_flight: usize) {
        self.now(|s| {
            s.queue = Some(queue as u64);
            s.in_flight = Some(in_flight as u64);
        });
    }
}

/// Sample the queue and the in-flight count every second while the gateway exists.
pub fn spawn_sampler(app: Weak<App>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tick.tick().await;
            let Some(app) = app.upgrade() else {
                return;
            };
            let queue = crate::engine::Priority::ALL
                .iter()
                .map(|p| app.queue.len(*p))
                .sum();
            app.live.sample(queue, app.pool.sending());
        }
    });
}

/// One named series: a rate per second against a limit (per second), if known.
#[derive(Debug, Serialize)]
pub struct RateSeries {
    /// Key fingerprint or client name.
    pub name: String,
    /// Per second (oldest first): requests sent (keys) or answered (clients).
    pub rate: Vec<u64>,
    /// Per second: 429s received from the provider (keys) or sent by the gateway (clients).
    pub rate_limited: Vec<u64>,
    /// The requests-per-minute limit, if one is known.
    pub requests_per_min: Option<u64>,
    /// The tokens-per-minute limit, if one is known.
    pub tokens_per_min: Option<u64>,
    /// The requests limit's bucket, if known (it allows bursts above the per-minute rate).
    pub requests_burst: Option<u64>,
    /// What the window's requests used of the budget the requests limit allowed over it (a full
    /// bucket plus its refill: [`crate::quota::budget`]), in percent.
    pub budget_percent: Option<f64>,
    /// For a `[[models]]` deployment's key: `public name → upstream model (provider)`.
    pub serves: Option<String>,
    /// Attempts being sent with it now (keys).
    pub sending_now: Option<u64>,
    /// Why a key left rotation, if it did.
    pub removed: Option<String>,
}

/// What `GET /status.json` returns.
#[derive(Debug, Serialize)]
pub struct StatusJson {
    /// Shape version.
    pub version: u32,
    /// Seconds since the epoch of the last sample.
    pub now: u64,
    /// Start of each second shown (seconds since the epoch).
    pub t: Vec<u64>,
    /// Requests waiting in the fair queue, sampled each second.
    pub queue_depth: Vec<Option<u64>>,
    /// Attempts being sent upstream, sampled each second (requests waiting for their time are
    /// in `queue_depth` or booked, not here).
    pub in_flight: Vec<Option<u64>>,
    /// Mean time waited before the last attempt, of the requests answered in each second (ms).
    pub wait_ms: Vec<Option<f64>>,
    /// Per upstream key.
    pub keys: Vec<RateSeries>,
    /// Per client.
    pub clients: Vec<RateSeries>,
    /// Requests waiting now.
    pub queue_now: u64,
    /// Attempts being sent upstream now.
    pub in_flight_now: u64,
    /// The in-flight bound now.
    pub in_flight_limit: u64,
}

fn series_of(
    seconds: &[Second],
    name: &str,
    pick: impl Fn(&Second) -> (&BTreeMap<Arc<str>, u64>, &BTreeMap<Arc<str>, u64>),
) -> (Vec<u64>, Vec<u64>) {
    seconds
        .iter()
        .map(|s| {
            let (rate, limited) = pick(s);
            (
                rate.get(name).copied().unwrap_or(0),
                limited.get(name).copied().unwrap_or(0),
            )
        })
        .unzip()
}

/// The figures of the last [`WINDOW_SECS`] seconds (every second present, empty ones as 0).
pub fn snapshot(app: &App) -> StatusJson {
    let now = now_secs();
    let recorded: Vec<Second> = app.live.lock().iter().cloned().collect();
    let first = recorded
        .first()
        .map_or(now, |s| s.t)
        .max(now.saturating_sub(WINDOW_SECS as u64 - 1));
    let seconds: Vec<Second> = (first..=now)
        .map(|t| {
            recorded
                .iter()
                .find(|s| s.t == t)
                .cloned()
                .unwrap_or(Second {
                    t,
                    ..Second::default()
                })
        })
        .collect();
    let mut keys: Vec<RateSeries> = Vec::new();
    // Per key, each dimension at its largest per-model limit (with that limit's bucket).
    let mut limits: BTreeMap<String, [Option<(u64, u64)>; 2]> = BTreeMap::new();
    for (key, _model, quota) in app.pool.quotas() {
        let l = quota.limits();
        let entry = limits.entry(key).or_default();
        for (slot, dimension) in entry
            .iter_mut()
            .zip([Dimension::Requests, Dimension::Tokens])
        {
            if let Some(limit) = l[dimension.index()]
                && slot.is_none_or(|(rate, _)| limit.0 > rate)
            {
                *slot = Some(limit);
            }
        }
    }
    let window = Duration::from_secs(seconds.len() as u64);
    let pool_keys = app.pool.keys();
    let mut key_names: Vec<String> = seconds
        .iter()
        .flat_map(|s| s.attempts.keys().map(|k| k.to_string()))
        .chain(pool_keys.iter().map(|k| k.label.clone()))
        .collect();
    key_names.sort();
    key_names.dedup();
    for name in key_names {
        let (rate, rate_limited) = series_of(&seconds, &name, |s| (&s.attempts, &s.rate_limited));
        let [requests, tokens] = limits.get(&name).copied().unwrap_or_default();
        let view = pool_keys.iter().find(|k| k.label == name);
        let sent: u64 = rate.iter().sum();
        keys.push(RateSeries {
            removed: view.and_then(|k| k.removed.clone()),
            serves: view.and_then(|k| k.serves.clone()),
            sending_now: view.map(|k| k.sending as u64),
            budget_percent: requests
                .map(|(per_minute, burst)| Budget { per_minute, burst }.used_percent(sent, window)),
            name,
            rate,
            rate_limited,
            requests_per_min: requests.map(|l| l.0),
            requests_burst: requests.map(|l| l.1),
            tokens_per_min: tokens.map(|l| l.0),
        });
    }
    let mut clients: Vec<RateSeries> = Vec::new();
    let mut client_names: Vec<(String, Option<u64>, Option<u64>)> = app
        .config
        .clients
        .iter()
        .map(|c| {
            (
                c.name.clone(),
                c.limits.get(Dimension::Requests).map(|l| l.per_minute),
                c.limits.get(Dimension::Tokens).map(|l| l.per_minute),
            )
        })
        .collect();
    if client_names.is_empty() {
        client_names.push((super::clients::ANONYMOUS.to_string(), None, None));
    }
    for (name, rpm, tpm) in client_names {
        let (rate, rate_limited) = series_of(&seconds, &name, |s| (&s.requests, &s.refused));
        clients.push(RateSeries {
            name,
            rate,
            rate_limited,
            requests_per_min: rpm,
            tokens_per_min: tpm,
            requests_burst: None,
            budget_percent: None,
            serves: None,
            sending_now: None,
            removed: None,
        });
    }
    let queue_now = crate::engine::Priority::ALL
        .iter()
        .map(|p| app.queue.len(*p) as u64)
        .sum();
    StatusJson {
        version: 1,
        now,
        t: seconds.iter().map(|s| s.t).collect(),
        queue_depth: seconds.iter().map(|s| s.queue).collect(),
        in_flight: seconds.iter().map(|s| s.in_flight).collect(),
        wait_ms: seconds
            .iter()
            .map(|s| (s.waits > 0).then(|| s.wait_ms_sum as f64 / s.waits as f64))
            .collect(),
        keys,
        clients,
        queue_now,
        in_flight_now: app.pool.sending() as u64,
        in_flight_limit: app.engine.concurrency().limit() as u64,
    }
}

/// `GET /status.json`.
pub async fn json(State(app): State<Arc<App>>) -> Response {
    let body = snapshot(&app);
    ([(header::CACHE_CONTROL, "no-store")], axum::Json(body)).into_response()
}

/// `GET /status` and `GET /`: the page (static; its script draws what `/status.json` says).
pub async fn page() -> Response {
    let html = format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>paceline serve: live status</title><style>{STYLE}{EXTRA_STYLE}</style>\
         <script>{ERROR_CATCHER}</script></head><body><main>\
         <h1>paceline serve — live status</h1>\
         <div class=\"meta\">the last {} minutes, refreshed every 2 s from <code>/status.json</code> · \
         keys as fingerprints only · <span id=\"updated\">loading…</span></div>\
         <div class=\"tiles\" id=\"tiles\"></div><div id=\"charts\"></div></main>\
         <script>{LIVE_SCRIPT}</script></body></html>\n",
        WINDOW_SECS / 60
    );
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        html,
    )
        .into_response()
}

const EXTRA_STYLE: &str = "
.error{color:#dc2626}.charts2{display:grid;grid-template-columns:1fr 1fr;gap:12px}
";

/// The page's script: fetch, then draw tiles and SVG line charts (text set with textContent,
/// so no name from the JSON is ever parsed as markup).
const LIVE_SCRIPT: &str = r##"
(function () {
  var NS = "http://www.w3.org/2000/svg";
  var COLORS = ["#2563eb", "#16a34a", "#d97706", "#7c3aed", "#0891b2", "#db2777", "#65a30d", "#4b5563"];
  var refreshes = 0;
  function el(tag, attrs, text) {
    var e = tag.indexOf("svg:") === 0 ? document.createElementNS(NS, tag.slice(4)) : document.createElement(tag);
    for (var k in attrs) e.setAttribute(k, attrs[k]);
    if (text !== undefined) e.textContent = text;
    return e;
  }
  function fmt(v) {
    if (v === null || v === undefined) return "–";
    if (v >= 1e6) return (v / 1e6).toFixed(1) + "M";
    if (v >= 1e4) return (v / 1e3).toFixed(0) + "k";
    if (v >= 1e3) return (v / 1e3).toFixed(1) + "k";
    return v >= 100 || v === Math.round(v) ? String(Math.round(v)) : v.toFixed(1);
  }
  function niceMax(m) {
    if (!(m > 0)) return 1;
    var p = Math.pow(10, Math.floor(Math.log10(m)));
    var steps = [1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10];
    for (var i = 0; i < steps.length; i++) if (steps[i] * p >= m) return steps[i] * p;
    return 10 * p;
  }
  function chart(title, lines, limits) {
    var W = 560, H = 200, L = 48, R = 10, T = 10, B = 24;
    var card = el("div", {"class": "card"});
    card.appendChild(el("h3", {}, title));
    var legend = el("div", {"class": "legend"});
    lines.concat(limits).forEach(function (l) {
      var s = el("span", {});
      var swatch = el("i", {style: l.limit
        ? "background:repeating-linear-gradient(90deg,#dc2626 0 4px,transparent 4px 6px)"
        : "background:" + l.color});
      s.appendChild(swatch);
      s.appendChild(document.createTextNode(l.name));
      legend.appendChild(s);
    });
    card.appendChild(legend);
    var n = lines.reduce(function (m, l) { return Math.max(m, l.values.length); }, 0);
    var max = 0;
    lines.forEach(function (l) { l.values.forEach(function (v) { if (v !== null && v > max) max = v; }); });
    limits.forEach(function (l) { if (l.value > max) max = l.value; });
    var top = niceMax(max * 1.05);
    var svg = el("svg:svg", {viewBox: "0 0 " + W + " " + H, role: "img"});
    var ph = H - T - B, pw = W - L - R;
    function y(v) { return T + ph - ph * Math.min(v / top, 1.05); }
    function x(i) { return L + pw * (i + 0.5) / Math.max(n, 1); }
    for (var g = 0; g <= 4; g++) {
      var yy = T + ph - ph * g / 4;
      svg.appendChild(el("svg:line", {"class": "grid", x1: L, x2: W - R, y1: yy, y2: yy}));
      svg.appendChild(el("svg:text", {x: L - 6, y: yy + 4, "text-anchor": "end"}, fmt(top * g / 4)));
    }
    [0, 60, 120, 180, 240, 299].forEach(function (back) {
      if (back >= n) return;
      svg.appendChild(el("svg:text", {x: x(n - 1 - back), y: H - 6, "text-anchor": "middle"},
        back === 0 ? "now" : "-" + Math.round(back / 60) + "m"));
    });
    limits.forEach(function (l) {
      svg.appendChild(el("svg:line", {"class": "limit", stroke: "#dc2626", x1: L, x2: W - R, y1: y(l.value), y2: y(l.value)}));
    });
    lines.forEach(function (l) {
      var d = "", down = false;
      l.values.forEach(function (v, i) {
        if (v === null || v === undefined) { down = false; return; }
        d += (down ? "L" : "M") + x(i).toFixed(1) + "," + y(v).toFixed(1) + " ";
        down = true;
      });
      if (d) svg.appendChild(el("svg:path", {d: d, fill: "none", stroke: l.color, "stroke-width": 1.8}));
      l.values.forEach(function (v, i) {
        var alone = (i === 0 || l.values[i - 1] === null) && (i === n - 1 || l.values[i + 1] === null);
        if (v !== null && v !== undefined && alone) {
          svg.appendChild(el("svg:circle", {cx: x(i).toFixed(1), cy: y(v).toFixed(1), r: 2.5, fill: l.color}));
        }
      });
    });
    card.appendChild(svg);
    return card;
  }
  function smooth(values, width) {
    return values.map(function (_, i) {
      var lo = Math.max(0, i - width + 1), s = 0;
      for (var j = lo; j <= i; j++) s += values[j];
      return s / (i - lo + 1);
    });
  }
  function tile(value, label) {
    var t = el("div", {"class": "tile"});
    t.appendChild(el("div", {"class": "v"}, value));
    t.appendChild(el("div", {"class": "l"}, label));
    return t;
  }
  function sum(a) { return a.reduce(function (s, v) { return s + (v || 0); }, 0); }
  function rateCharts(kind, list) {
    var grid = el("div", {"class": "charts2"});
    list.forEach(function (s, i) {
      var refill = s.requests_burst ? "refill " + fmt(s.requests_per_min / 60) + " req/s (a bucket of " + fmt(s.requests_burst) + " allows bursts above)" : "limit " + fmt(s.requests_per_min / 60) + " req/s";
      var limits = s.requests_per_min ? [{name: refill, value: s.requests_per_min / 60, limit: true}] : [];
      var title = kind + " " + s.name + (s.serves ? " · " + s.serves : "") + (s.removed ? " (removed: " + s.removed + ")" : "");
      var budget = (s.budget_percent === null || s.budget_percent === undefined) ? "" : " · " + (s.budget_percent > 0 && s.budget_percent < 0.5 ? "<1" : s.budget_percent.toFixed(0)) + "% of the window's budget";
      grid.appendChild(chart(title + " — req/s (10 s mean)" + budget, [
        {name: kind === "key" ? "sent" : "answered", color: COLORS[i % COLORS.length], values: smooth(s.rate, 10)},
        {name: kind === "key" ? "429 from provider" : "429 sent (own limit)", color: "#dc2626", values: smooth(s.rate_limited, 10)}
      ], limits));
    });
    return grid;
  }
  function draw(d) {
    var last = d.t.length - 1;
    var recent = function (a) { return sum(a.slice(Math.max(0, a.length - 60))); };
    var tiles = document.getElementById("tiles");
    tiles.textContent = "";
    tiles.appendChild(tile(fmt(d.queue_now), "queued now"));
    tiles.appendChild(tile(fmt(d.in_flight_now) + " / " + fmt(d.in_flight_limit), "sending now / in-flight bound"));
    var waits = d.wait_ms.slice(Math.max(0, last - 59)).filter(function (v) { return v !== null; });
    tiles.appendChild(tile(waits.length ? fmt(sum(waits) / waits.length) + " ms" : "–", "mean wait, last minute"));
    tiles.appendChild(tile(fmt(d.keys.reduce(function (s, k) { return s + recent(k.rate); }, 0) / 60), "req/s upstream, last minute"));
    tiles.appendChild(tile(fmt(d.keys.reduce(function (s, k) { return s + recent(k.rate_limited); }, 0)), "429s from the provider, last minute"));
    tiles.appendChild(tile(String(d.keys.filter(function (k) { return !k.removed; }).length) + " / " + d.keys.length, "keys in rotation"));
    var charts = document.getElementById("charts");
    charts.textContent = "";
    charts.appendChild(el("h2", {}, "Queue"));
    var two = el("div", {"class": "charts2"});
    two.appendChild(chart("Queue depth and requests being sent", [
      {name: "queued", color: COLORS[0], values: d.queue_depth},
      {name: "sending", color: COLORS[3], values: d.in_flight}
    ], []));
    two.appendChild(chart("Wait before the last attempt (ms, mean per second)", [
      {name: "wait", color: COLORS[2], values: d.wait_ms}
    ], []));
    charts.appendChild(two);
    charts.appendChild(el("h2", {}, "Upstream keys: rate against the limit (its refill; a full bucket allows bursts above it)"));
    charts.appendChild(rateCharts("key", d.keys));
    charts.appendChild(el("h2", {}, "Clients: rate against their own limit"));
    charts.appendChild(rateCharts("client", d.clients));
  }
  function refresh() {
    fetch("/status.json", {cache: "no-store"})
      .then(function (r) { if (!r.ok) throw new Error("HTTP " + r.status); return r.json(); })
      .then(function (d) {
        draw(d);
        refreshes += 1;
        document.body.setAttribute("data-refreshes", String(refreshes));
        var u = document.getElementById("updated");
        u.className = "";
        u.textContent = "updated " + new Date(d.now * 1000).toLocaleTimeString();
      })
      .catch(function (e) {
        var u = document.getElementById("updated");
        u.className = "error";
        u.textContent = "cannot refresh: " + e.message;
      })
      .then(function () { setTimeout(refresh, 2000); });
  }
  refresh();
})();
"##;
