//! `image-builder trace`: takes the kernel's trace ring from a running VM (over
//! its control channel) or from a hosted run, and writes it as a
//! Chrome/Perfetto trace (`trace.json`: one track per service, flow arrows
//! from each call to its receive and its reply) and as an SVG timeline drawn
//! here (`trace.svg`: one lane per service), for people without a trace
//! viewer.
//!
//! What is not here: the ring and its line format (kernel/core's `trace`,
//! `atoll_abi::trace`).

use crate::error::{Context, Error};
use atoll_abi::trace::{BLOCK_RECEIVE, BLOCK_REPLY, BLOCK_SLEEP, Kind, Line, Record, parse_line};
use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The most services or endpoints a dump may name (far above any system).
const MAX_INDEX: usize = 65_536;

/// A trace dump, parsed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Dump {
    pub services: Vec<String>,
    /// Endpoint names and their providers.
    pub endpoints: Vec<(String, Option<u32>)>,
    pub records: Vec<Record>,
    pub overwritten: u64,
}

impl Dump {
    /// Parses dump lines (others are ignored). `None` until the end line.
    pub fn parse<'a>(lines: impl IntoIterator<Item = &'a str>) -> Option<Dump> {
        let mut dump = Dump::default();
        let mut begun = false;
        for line in lines {
            match parse_line(line) {
                Some(Line::Begin { overwritten, .. }) => {
                    dump = Dump {
                        overwritten,
                        ..Dump::default()
                    };
                    begun = true;
                }
                // Indexes beyond what a system can hold (a garbled line) are
                // skipped, not allocated for.
                Some(Line::Service { index, .. } | Line::Endpoint { index, .. })
                    if index as usize >= MAX_INDEX => {}
                Some(Line::Service { index, name }) => {
                    let index = index as usize;
                    if dump.services.len() <= index {
                        dump.services.resize(index + 1, String::new());
                    }
                    dump.services[index] = name;
                }
                Some(Line::Endpoint {
                    index,
                    provider,
                    name,
                }) => {
                    let index = index as usize;
                    if dump.endpoints.len() <= index {
                        dump.endpoints.resize(index + 1, (String::new(), None));
                    }
                    dump.endpoints[index] = (name, provider);
                }
                Some(Line::Record(record)) if begun => dump.records.push(record),
                Some(Line::End { records }) if begun => {
                    return (records as usize == dump.records.len()).then_some(dump);
                }
                _ => {}
            }
        }
        None
    }

    /// The name of service `index` (the kernel for [`atoll_abi::trace::KERNEL_PEER`]).
    fn service_name(&self, index: u16) -> String {
        self.services
            .get(usize::from(index))
            .cloned()
            .unwrap_or_else(|| String::from("kernel"))
    }
}

/// Asks the VM on `socket` to trace for `seconds`, then fetches the ring.
pub fn fetch(socket: &Path, seconds: f64) -> Result<Dump, Error> {
    let mut stream = UnixStream::connect(socket).context(|| {
        format!(
            "connecting to {} (is the system running under `image-builder run`?)",
            socket.display()
        )
    })?;
    stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .context(|| "setting a timeout".to_string())?;
    let mut reader = BufReader::new(
        stream
            .try_clone()
            .context(|| "cloning the socket".to_string())?,
    );
    let mut send = |frame: Vec<u8>| {
        stream
            .write_all(&frame)
            .context(|| "writing to the control channel".to_string())
    };
    send(atoll_abi::control::encode_trace(Some(true)))?;
    wait_for(&mut reader, |line| line.starts_with("ok: tracing on"))?;
    eprintln!("trace: tracing on; recording for {seconds} s");
    std::thread::sleep(Duration::from_secs_f64(seconds));
    send(atoll_abi::control::encode_trace(Some(false)))?;
    send(atoll_abi::control::encode_trace(None))?;
    let mut lines = Vec::new();
    wait_for(&mut reader, |line| {
        lines.push(line.to_string());
        line.starts_with("trace: end")
    })?;
    Dump::parse(lines.iter().map(String::as_str))
        .ok_or_else(|| Error::Other("the kernel's trace dump was incomplete".into()))
}

/// Reads lines until `done` says so (60 s at most).
fn wait_for(reader: &mut impl BufRead, mut done: impl FnMut(&str) -> bool) -> Result<(), Error> {
    let started = Instant::now();
    let mut line = String::new();
    loop {
        if started.elapsed() > Duration::from_secs(60) {
            return Err(Error::Other("no answer from the kernel in 60 s".into()));
        }
        match reader.read_line(&mut line) {
            Ok(0) => return Err(Error::Other("the VM closed the control channel".into())),
            Ok(_) if line.ends_with('\n') => {
                let text = line.trim_end();
                if text.starts_with("error:") && text.contains("tracing") {
                    return Err(Error::Other(format!("the kernel said: {text}")));
                }
                if done(text) {
                    return Ok(());
                }
                line.clear();
            }
            // A partial line: the rest follows.
            Ok(_) => {}
            Err(error)
                if matches!(
                    error.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(error) => return Err(Error::Other(format!("reading the answer: {error}"))),
        }
    }
}

/// Writes `trace.json` and `trace.svg` into `out`; returns their paths.
pub fn write(dump: &Dump, out: &Path) -> Result<(PathBuf, PathBuf), Error> {
    std::fs::create_dir_all(out).context(|| format!("creating {}", out.display()))?;
    let json = out.join("trace.json");
    let svg = out.join("trace.svg");
    std::fs::write(&json, chrome_json(dump)).context(|| format!("writing {}", json.display()))?;
    std::fs::write(&svg, timeline_svg(dump)).context(|| format!("writing {}", svg.display()))?;
    Ok((json, svg))
}

/// One line of summary for the terminal.
pub fn summary(dump: &Dump) -> String {
    let span = match (dump.records.first(), dump.records.last()) {
        (Some(first), Some(last)) => last.time_ns.saturating_sub(first.time_ns),
        _ => 0,
    };
    format!(
        "{} records over {:.3} ms, {} services, {} overwritten",
        dump.records.len(),
        span as f64 / 1e6,
        dump.services.len(),
        dump.overwritten
    )
}

/// Microseconds since the first record, as Chrome's `ts` wants them.
fn micros(record: &Record, start: u64) -> f64 {
    record.time_ns.saturating_sub(start) as f64 / 1000.0
}

fn block_reason(detail: u32) -> &'static str {
    match detail {
        BLOCK_RECEIVE => "receive",
        BLOCK_REPLY => "reply",
        BLOCK_SLEEP => "sleep",
        _ => "?",
    }
}

/// The Chrome/Perfetto JSON trace: process 1 is the system, thread `n + 1`
/// is service `n` (thread 0 the kernel). Each record is a short complete
/// event ("X") on its service's track; each blocked span is an "X" event
/// named after what it waited for; a call starts a flow (`s`, id = token) that
/// steps at the receive (`t`) and ends at the reply (`f`).
pub fn chrome_json(dump: &Dump) -> String {
    let start = dump.records.first().map_or(0, |record| record.time_ns);
    let tid = |service: u16| {
        if usize::from(service) < dump.services.len() {
            u64::from(service) + 1
        } else {
            0
        }
    };
    let mut events = Vec::new();
    events.push(serde_json::json!({
        "name": "process_name", "ph": "M", "pid": 1, "tid": 0,
        "args": { "name": "atoll" }
    }));
    events.push(serde_json::json!({
        "name": "thread_name", "ph": "M", "pid": 1, "tid": 0,
        "args": { "name": "kernel" }
    }));
    for (index, name) in dump.services.iter().enumerate() {
        events.push(serde_json::json!({
            "name": "thread_name", "ph": "M", "pid": 1, "tid": index + 1,
            "args": { "name": name }
        }));
        events.push(serde_json::json!({
            "name": "thread_sort_index", "ph": "M", "pid": 1, "tid": index + 1,
            "args": { "sort_index": index + 1 }
        }));
    }
    let mut blocked_at: HashMap<u16, (f64, u32)> = HashMap::new();
    for record in &dump.records {
        let ts = micros(record, start);
        let tid = tid(record.service);
        let peer = match record.kind {
            Kind::Send | Kind::Call => dump
                .endpoints
                .get(usize::from(record.peer))
                .map_or_else(|| String::from("?"), |(name, _)| name.clone()),
            Kind::Receive | Kind::Reply => dump.service_name(record.peer),
            _ => String::new(),
        };
        let name = match record.kind {
            Kind::Block => format!("block ({})", block_reason(record.detail)),
            Kind::Interrupt => format!("interrupt {}", record.detail),
            Kind::Send | Kind::Call => format!("{} {peer}", record.kind.name()),
            Kind::Receive => format!("receive from {peer}"),
            Kind::Reply => format!("reply to {peer}"),
            kind => String::from(kind.name()),
        };
        match record.kind {
            Kind::Block => {
                blocked_at.insert(record.service, (ts, record.detail));
            }
            Kind::Wake | Kind::Restart | Kind::Fault => {
                if let Some((since, reason)) = blocked_at.remove(&record.service) {
                    events.push(serde_json::json!({
                        "name": format!("blocked in {}", block_reason(reason)),
                        "cat": "blocked", "ph": "X", "pid": 1, "tid": tid,
                        "ts": since, "dur": (ts - since).max(0.0),
                    }));
                }
            }
            _ => {}
        }
        events.push(serde_json::json!({
            "name": name, "cat": record.kind.name(), "ph": "X", "pid": 1, "tid": tid,
            "ts": ts, "dur": 0.5,
            "args": {
                "time_ns": record.time_ns, "token": record.token, "detail": record.detail,
                "repeats": record.repeats,
            }
        }));
        let flow = match record.kind {
            Kind::Call => Some("s"),
            Kind::Receive if record.token != 0 => Some("t"),
            Kind::Reply => Some("f"),
            _ => None,
        };
        if let Some(phase) = flow {
            events.push(serde_json::json!({
                "name": "call", "cat": "call", "ph": phase, "id": record.token,
                "pid": 1, "tid": tid, "ts": ts, "bp": "e",
            }));
        }
    }
    let trace = serde_json::json!({
        "traceEvents": events,
        "displayTimeUnit": "ns",
        "otherData": {
            "source": "atoll kernel trace ring",
            "overwritten": dump.overwritten,
        },
    });
    serde_json::to_string_pretty(&trace).unwrap_or_default()
}

/// Text escaped for XML.
fn xml(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for character in text.chars() {
        match character {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if c.is_control() => out.push('?'),
            c => out.push(c),
        }
    }
    out
}

/// The colour a kind is drawn in.
fn colour(kind: Kind) -> &'static str {
    match kind {
        Kind::Send => "#1f77b4",
        Kind::Call => "#ff7f0e",
        Kind::Receive => "#2ca02c",
        Kind::Reply => "#9467bd",
        Kind::Block => "#7f7f7f",
        Kind::Wake => "#17becf",
        Kind::Fault => "#d62728",
        Kind::Restart => "#e377c2",
        Kind::Swap => "#bcbd22",
        Kind::Interrupt => "#8c564b",
    }
}

/// The SVG timeline: one lane (a `<g class="lane">`) per service, time
/// left to right; grey bars where a service was blocked, a tick per event
/// coloured by kind, and lines from each call to its receive and reply.
pub fn timeline_svg(dump: &Dump) -> String {
    const LEFT: f64 = 160.0;
    const WIDTH: f64 = 1200.0;
    const LANE: f64 = 28.0;
    const TOP: f64 = 40.0;
    let lanes = dump.services.len().max(1);
    let height = TOP + LANE * lanes as f64 + 60.0;
    let (first, last) = match (dump.records.first(), dump.records.last()) {
        (Some(first), Some(last)) => (first.time_ns, last.time_ns),
        _ => (0, 0),
    };
    let span = last.saturating_sub(first).max(1) as f64;
    let x = |time: u64| LEFT + (time.saturating_sub(first) as f64 / span) * (WIDTH - LEFT - 20.0);
    let lane_y = |service: u16| TOP + LANE * f64::from(service) + LANE / 2.0;
    let known = |service: u16| usize::from(service) < dump.services.len();
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<?xml version="1.0" encoding="UTF-8"?>
<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="12">
<title>Atoll trace: {}</title>
<rect width="100%" height="100%" fill="white"/>"#,
        xml(&summary(dump))
    );
    let _ = writeln!(
        svg,
        r#"<text x="10" y="20" font-size="14">Atoll trace: {} (time left to right: {:.3} ms)</text>"#,
        xml(&summary(dump)),
        span / 1e6
    );
    // Blocked spans, per service.
    let mut spans: Vec<Vec<(u64, u64)>> = vec![Vec::new(); dump.services.len()];
    let mut blocked_since: HashMap<u16, u64> = HashMap::new();
    for record in &dump.records {
        match record.kind {
            Kind::Block => {
                blocked_since.insert(record.service, record.time_ns);
            }
            Kind::Wake | Kind::Restart | Kind::Fault => {
                if let (Some(since), Some(lane)) = (
                    blocked_since.remove(&record.service),
                    spans.get_mut(usize::from(record.service)),
                ) {
                    lane.push((since, record.time_ns));
                }
            }
            _ => {}
        }
    }
    for (service, name) in dump.services.iter().enumerate() {
        let index = service as u16;
        let y = lane_y(index);
        let _ = writeln!(svg, r#"<g class="lane" data-service="{}">"#, xml(name));
        let _ = writeln!(
            svg,
            r##"<line x1="{LEFT}" y1="{y}" x2="{}" y2="{y}" stroke="#dddddd"/>"##,
            WIDTH - 20.0
        );
        let _ = writeln!(svg, r#"<text x="10" y="{}">{}</text>"#, y + 4.0, xml(name));
        for &(from, to) in spans.get(service).into_iter().flatten() {
            let _ = writeln!(
                svg,
                r##"<rect x="{:.2}" y="{}" width="{:.2}" height="8" fill="#cccccc"/>"##,
                x(from),
                y - 4.0,
                (x(to) - x(from)).max(0.5)
            );
        }
        for record in dump.records.iter().filter(|record| record.service == index) {
            let _ = writeln!(
                svg,
                r#"<line x1="{0:.2}" y1="{1}" x2="{0:.2}" y2="{2}" stroke="{3}" stroke-width="1.5"><title>{4}</title></line>"#,
                x(record.time_ns),
                y - 9.0,
                y + 9.0,
                colour(record.kind),
                xml(&format!(
                    "{} at {} ns (token {}, detail {}, repeats {})",
                    record.kind.name(),
                    record.time_ns,
                    record.token,
                    record.detail,
                    record.repeats
                ))
            );
        }
        svg.push_str("</g>\n");
    }
    // Call arrows: call -> receive -> reply, by token.
    let mut calls: HashMap<u32, &Record> = HashMap::new();
    for record in &dump.records {
        match record.kind {
            Kind::Call => {
                calls.insert(record.token, record);
            }
            Kind::Receive | Kind::Reply if record.token != 0 => {
                if let Some(from) = calls.get(&record.token).copied()
                    && known(from.service)
                    && known(record.service)
                {
                    let _ = writeln!(
                        svg,
                        r#"<line class="flow" x1="{:.2}" y1="{}" x2="{:.2}" y2="{}" stroke="{}" stroke-opacity="0.6"/>"#,
                        x(from.time_ns),
                        lane_y(from.service),
                        x(record.time_ns),
                        lane_y(record.service),
                        colour(record.kind)
                    );
                    if record.kind == Kind::Reply {
                        calls.remove(&record.token);
                    } else {
                        calls.insert(record.token, record);
                    }
                }
            }
            _ => {}
        }
    }
    // Legend.
    let legend_y = TOP + LANE * lanes as f64 + 30.0;
    for (index, kind) in Kind::ALL.iter().enumerate() {
        let lx = LEFT + index as f64 * 100.0;
        let _ = writeln!(
            svg,
            r#"<rect x="{lx}" y="{}" width="10" height="10" fill="{}"/><text x="{}" y="{}">{}</text>"#,
            legend_y - 9.0,
            colour(*kind),
            lx + 14.0,
            legend_y,
            kind.name()
        );
    }
    svg.push_str("</svg>\n");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(time_ns: u64, kind: Kind, service: u16, peer: u16, token: u32) -> Record {
        Record {
            time_ns,
            service,
            peer,
            token,
            detail: 0,
            repeats: 0,
            kind,
        }
    }

    fn dump() -> Dump {
        Dump {
            services: vec!["server".into(), "client <&>".into()],
            endpoints: vec![("echo".into(), Some(0))],
            records: vec![
                record(1_000, Kind::Block, 0, u16::MAX, 0),
                record(2_000, Kind::Call, 1, 0, 77),
                record(2_500, Kind::Block, 1, u16::MAX, 0),
                record(3_000, Kind::Receive, 0, 1, 77),
                record(4_000, Kind::Reply, 0, 1, 77),
                record(4_100, Kind::Wake, 1, u16::MAX, 0),
            ],
            overwritten: 0,
        }
    }

    #[test]
    fn dumps_parse_only_when_complete() {
        let mut lines: Vec<String> = vec![
            "noise".into(),
            "trace: begin 2 5 2 1".into(),
            "trace-service 0 server".into(),
            "trace-service 1 client".into(),
            "trace-endpoint 0 0 echo".into(),
        ];
        lines.push(record(1, Kind::Send, 1, 0, 0).to_line());
        lines.push(record(2, Kind::Receive, 0, 1, 0).to_line());
        let partial = Dump::parse(lines.iter().map(String::as_str));
        assert_eq!(partial, None);
        lines.push("trace: end 2".into());
        let dump = Dump::parse(lines.iter().map(String::as_str)).unwrap();
        assert_eq!(dump.services, ["server", "client"]);
        assert_eq!(dump.endpoints, [("echo".to_string(), Some(0))]);
        assert_eq!(dump.records.len(), 2);
        assert_eq!(dump.overwritten, 5);
        // A count that disagrees is an incomplete dump.
        *lines.last_mut().unwrap() = "trace: end 3".into();
        assert_eq!(Dump::parse(lines.iter().map(String::as_str)), None);
    }

    #[test]
    fn the_json_has_a_track_per_service_and_flows_by_token() {
        let json: serde_json::Value = serde_json::from_str(&chrome_json(&dump())).unwrap();
        let events = json["traceEvents"].as_array().unwrap();
        let names: Vec<&str> = events
            .iter()
            .filter(|event| event["name"] == "thread_name")
            .map(|event| event["args"]["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["kernel", "server", "client <&>"]);
        let flows: Vec<(&str, u64, f64)> = events
            .iter()
            .filter(|event| event["cat"] == "call" && event["id"] == 77)
            .map(|event| {
                (
                    event["ph"].as_str().unwrap(),
                    event["tid"].as_u64().unwrap(),
                    event["ts"].as_f64().unwrap(),
                )
            })
            .collect();
        assert_eq!(flows, [("s", 2, 1.0), ("t", 1, 2.0), ("f", 1, 3.0)]);
        let blocked: Vec<(u64, f64, f64)> = events
            .iter()
            .filter(|event| event["cat"] == "blocked")
            .map(|event| {
                (
                    event["tid"].as_u64().unwrap(),
                    event["ts"].as_f64().unwrap(),
                    event["dur"].as_f64().unwrap(),
                )
            })
            .collect();
        assert_eq!(blocked, [(2, 1.5, 1.6)]);
    }

    #[test]
    fn the_svg_has_a_lane_per_service_and_escapes_names() {
        let svg = timeline_svg(&dump());
        assert_eq!(svg.matches(r#"<g class="lane""#).count(), 2);
        assert!(svg.contains("client &lt;&amp;&gt;"));
        assert!(!svg.contains("client <&>"));
        // The call's two arrows.
        assert_eq!(svg.matches(r#"class="flow""#).count(), 2);
        assert_eq!(svg.matches("<g ").count(), svg.matches("</g>").count());
        assert!(svg.trim_end().ends_with("</svg>"));
    }
}
