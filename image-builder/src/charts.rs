//! The bench pictures: `target/bench/latest.svg` (the latest figure of each
//! benchmark in each place: guest, guest baseline, hosted, Linux) and
//! `target/bench/history.svg` (every series of `target/bench/results.jsonl`
//! over time), drawn here as plain SVG.
//!
//! Benchmarks differ by orders of magnitude and in unit, so each gets a row
//! of its own, scaled to its own largest value (small multiples), with the
//! numbers written beside the bars.

use crate::error::{Context, Error};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// One line of results.jsonl.
#[derive(Clone, Debug, PartialEq, serde::Deserialize)]
pub struct Figure {
    pub timestamp: u64,
    pub benchmark: String,
    #[serde(rename = "where")]
    pub place: String,
    pub unit: String,
    pub value: f64,
}

/// Reads the figures of a results.jsonl (lines that do not parse are skipped).
pub fn read(path: &Path) -> Result<Vec<Figure>, Error> {
    let text = std::fs::read_to_string(path).context(|| format!("reading {}", path.display()))?;
    Ok(text
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .filter(|figure: &Figure| figure.value.is_finite())
        .collect())
}

/// Writes latest.svg and history.svg beside `results`; returns their paths.
pub fn write(results: &Path) -> Result<(PathBuf, PathBuf), Error> {
    let figures = read(results)?;
    let folder = results.parent().unwrap_or(Path::new("."));
    let latest = folder.join("latest.svg");
    let history = folder.join("history.svg");
    std::fs::write(&latest, latest_svg(&figures))
        .context(|| format!("writing {}", latest.display()))?;
    std::fs::write(&history, history_svg(&figures))
        .context(|| format!("writing {}", history.display()))?;
    Ok((latest, history))
}

fn xml(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn number(value: f64) -> String {
    if value.abs() >= 100.0 || value.fract() == 0.0 {
        format!("{value:.0}")
    } else {
        format!("{value:.2}")
    }
}

const PLACES: [(&str, &str); 4] = [
    ("guest", "#1f77b4"),
    ("guest-baseline", "#aec7e8"),
    ("hosted", "#ff7f0e"),
    ("linux-pipe", "#2ca02c"),
];

fn colour(place: &str) -> &'static str {
    PLACES
        .iter()
        .find(|(name, _)| *name == place)
        .map_or("#7f7f7f", |(_, colour)| colour)
}

/// Benchmark (with unit) -> place -> figures, oldest first.
type Series<'a> = BTreeMap<(String, String), BTreeMap<String, Vec<&'a Figure>>>;

fn series(figures: &[Figure]) -> Series<'_> {
    let mut series: Series<'_> = BTreeMap::new();
    for figure in figures {
        series
            .entry((figure.benchmark.clone(), figure.unit.clone()))
            .or_default()
            .entry(figure.place.clone())
            .or_default()
            .push(figure);
    }
    for places in series.values_mut() {
        for list in places.values_mut() {
            list.sort_by_key(|figure| figure.timestamp);
        }
    }
    series
}

fn header(svg: &mut String, width: f64, height: f64, title: &str) {
    let _ = writeln!(
        svg,
        r#"<?xml version="1.0" encoding="UTF-8"?>
<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11">
<title>{0}</title>
<rect width="100%" height="100%" fill="white"/>
<text x="10" y="20" font-size="14">{0}</text>"#,
        xml(title)
    );
    for (index, (place, colour)) in PLACES.iter().enumerate() {
        let x = 420.0 + index as f64 * 120.0;
        let _ = writeln!(
            svg,
            r#"<rect x="{x}" y="10" width="10" height="10" fill="{colour}"/><text x="{}" y="19">{place}</text>"#,
            x + 14.0
        );
    }
}

/// One row per benchmark, a bar per place (its latest figure).
pub fn latest_svg(figures: &[Figure]) -> String {
    let series = series(figures);
    let bar = 12.0;
    let mut rows = Vec::new();
    for ((benchmark, unit), places) in &series {
        let latest: Vec<(&str, f64)> = PLACES
            .iter()
            .filter_map(|(place, _)| {
                let figure = places.get(*place)?.last()?;
                Some((*place, figure.value))
            })
            .collect();
        if !latest.is_empty() {
            rows.push((format!("{benchmark} ({unit})"), latest));
        }
    }
    let height = 40.0
        + rows
            .iter()
            .map(|(_, bars)| bar * bars.len() as f64 + 10.0)
            .sum::<f64>()
        + 10.0;
    let mut svg = String::new();
    header(
        &mut svg,
        1000.0,
        height,
        "Atoll benchmarks: latest figures (each row scaled to its largest bar)",
    );
    let mut y = 40.0;
    for (name, bars) in &rows {
        let max = bars
            .iter()
            .map(|(_, value)| value.abs())
            .fold(0.0, f64::max);
        let _ = writeln!(
            svg,
            r#"<g class="benchmark"><text x="10" y="{}">{}</text>"#,
            y + bar - 2.0,
            xml(name)
        );
        for (place, value) in bars {
            let width = if max > 0.0 {
                value.abs() / max * 300.0
            } else {
                0.0
            };
            let _ = writeln!(
                svg,
                r#"<rect x="420" y="{y}" width="{width:.1}" height="{}" fill="{}"><title>{place}: {}</title></rect><text x="{:.1}" y="{}">{}</text>"#,
                bar - 2.0,
                colour(place),
                number(*value),
                424.0 + width,
                y + bar - 3.0,
                number(*value)
            );
            y += bar;
        }
        svg.push_str("</g>\n");
        y += 10.0;
    }
    svg.push_str("</svg>\n");
    svg
}

/// One small chart per benchmark: each place's figures over time.
pub fn history_svg(figures: &[Figure]) -> String {
    let series = series(figures);
    let (first, last) = figures.iter().fold((u64::MAX, 0), |(first, last), figure| {
        (first.min(figure.timestamp), last.max(figure.timestamp))
    });
    let span = last.saturating_sub(first).max(1) as f64;
    let row = 60.0;
    let height = 40.0 + row * series.len() as f64 + 10.0;
    let mut svg = String::new();
    header(
        &mut svg,
        1000.0,
        height,
        "Atoll benchmarks over time (target/bench/results.jsonl; each row scaled to its own range)",
    );
    let (left, width) = (420.0, 540.0);
    for (index, ((benchmark, unit), places)) in series.iter().enumerate() {
        let top = 40.0 + row * index as f64;
        let values = places.values().flatten().map(|figure| figure.value);
        let (low, high) = values.fold((f64::MAX, f64::MIN), |(low, high), value| {
            (low.min(value), high.max(value))
        });
        let range = (high - low).max(f64::EPSILON);
        let _ = writeln!(
            svg,
            r##"<g class="benchmark"><text x="10" y="{}">{}</text><text x="10" y="{}" fill="#555555">{} .. {} {}</text><rect x="{left}" y="{top}" width="{width}" height="{}" fill="none" stroke="#dddddd"/>"##,
            top + 20.0,
            xml(benchmark),
            top + 34.0,
            number(low),
            number(high),
            xml(unit),
            row - 10.0
        );
        for (place, list) in places {
            let points: Vec<String> = list
                .iter()
                .map(|figure| {
                    let x = left + (figure.timestamp.saturating_sub(first) as f64 / span) * width;
                    let y = top + (row - 14.0) - (figure.value - low) / range * (row - 18.0);
                    format!("{x:.1},{y:.1}")
                })
                .collect();
            let _ = writeln!(
                svg,
                r#"<polyline points="{}" fill="none" stroke="{}" stroke-width="1.5"/>"#,
                points.join(" "),
                colour(place)
            );
            for point in &points {
                let (x, y) = point.split_once(',').unwrap_or(("0", "0"));
                let _ = writeln!(
                    svg,
                    r#"<circle cx="{x}" cy="{y}" r="2" fill="{}"/>"#,
                    colour(place)
                );
            }
        }
        svg.push_str("</g>\n");
    }
    svg.push_str("</svg>\n");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    fn figure(timestamp: u64, benchmark: &str, place: &str, value: f64) -> Figure {
        Figure {
            timestamp,
            benchmark: benchmark.into(),
            place: place.into(),
            unit: "ns".into(),
            value,
        }
    }

    #[test]
    fn the_latest_figure_of_each_place_is_drawn_once() {
        let figures = vec![
            figure(1, "round trip <16 B>", "guest", 900.0),
            figure(2, "round trip <16 B>", "guest", 1000.0),
            figure(2, "round trip <16 B>", "hosted", 100.0),
            figure(2, "spawn", "hosted", 5.5),
        ];
        let svg = latest_svg(&figures);
        assert_eq!(svg.matches(r#"<g class="benchmark""#).count(), 2);
        assert!(svg.contains(">1000<") && !svg.contains(">900<"));
        assert!(svg.contains("round trip &lt;16 B&gt; (ns)"));
        // The largest bar of a row is full width; the others in proportion.
        assert!(svg.contains(r#"width="300.0""#) && svg.contains(r#"width="30.0""#));
        assert_eq!(svg.matches("<g ").count(), svg.matches("</g>").count());
    }

    #[test]
    fn history_draws_a_line_per_series() {
        let figures = vec![
            figure(10, "a", "guest", 1.0),
            figure(20, "a", "guest", 3.0),
            figure(20, "a", "hosted", 2.0),
        ];
        let svg = history_svg(&figures);
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert_eq!(svg.matches("<circle").count(), 3);
        assert!(svg.trim_end().ends_with("</svg>"));
    }
}
