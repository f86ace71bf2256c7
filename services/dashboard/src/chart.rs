//! Charts drawn as SVG by the server (no chart library in the page): a
//! campaign's delivered / clicked bars per window, and a store's
//! subscribers per day with the active count as a line. Drawn for the
//! width the page asks for, so labels keep their size on a phone.

use std::fmt::Write;

use crate::store::{Campaign, Day};

/// Narrowest and widest chart drawn, CSS pixels.
pub const WIDTHS: std::ops::RangeInclusive<u32> = 240..=1600;
const HEIGHT: u32 = 240;
const LEFT: f64 = 52.0;
const RIGHT: f64 = 12.0;
const TOP: f64 = 30.0;
const BOTTOM: f64 = 34.0;

const DELIVERED: &str = "#2563eb";
const CLICKED: &str = "#f59e0b";
const SUBSCRIBED: &str = "#16a34a";
const EXPIRED: &str = "#dc2626";
const ACTIVE: &str = "#7c3aed";

/// Escapes text for XML.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The smallest "nice" number (1, 2 or 5 × 10ⁿ) at least `max / 4`, and
/// the axis top it gives (a multiple of it, at least `max`).
fn ticks(max: i64) -> (i64, i64) {
    let max = max.max(1);
    let rough = (max as f64 / 4.0).max(1.0);
    let magnitude = 10f64.powf(rough.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|s| *s >= rough)
        .unwrap_or(10.0 * magnitude)
        .max(1.0) as i64;
    let top = (max + step - 1) / step * step;
    (step, top)
}

/// Thousands separated by a thin space, e.g. `12 345`.
pub fn grouped(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let out = digits
        .as_bytes()
        .rchunks(3)
        .rev()
        .map(|group| String::from_utf8_lossy(group))
        .collect::<Vec<_>>()
        .join("\u{2009}");
    match n < 0 {
        true => format!("-{out}"),
        false => out,
    }
}

struct Frame {
    width: f64,
    plot_w: f64,
    plot_h: f64,
    top: i64,
}

impl Frame {
    fn new(width: u32, max: i64) -> (Frame, i64) {
        let width = f64::from(width.clamp(*WIDTHS.start(), *WIDTHS.end()));
        let (step, top) = ticks(max);
        (
            Frame {
                width,
                plot_w: width - LEFT - RIGHT,
                plot_h: f64::from(HEIGHT) - TOP - BOTTOM,
                top,
            },
            step,
        )
    }

    fn y(&self, v: i64) -> f64 {
        TOP + self.plot_h - self.plot_h * (v as f64 / self.top as f64)
    }

    /// The opening tag, title, legend, and the y axis with its grid lines.
    fn open(&self, out: &mut String, label: &str, legend: &[(&str, &str)], step: i64) {
        let w = self.width;
        let _ = write!(
            out,
            "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {w} {HEIGHT}\" width=\"{w}\" \
             height=\"{HEIGHT}\" role=\"img\" aria-label=\"{l}\" font-family=\"system-ui, sans-serif\" \
             font-size=\"12\"><title>{l}</title>",
            l = esc(label)
        );
        let mut x = LEFT;
        for (name, color) in legend {
            let _ = write!(
                out,
                "<rect x=\"{x}\" y=\"8\" width=\"10\" height=\"10\" rx=\"2\" fill=\"{color}\"/>\
                 <text x=\"{tx}\" y=\"17\" fill=\"#374151\">{name}</text>",
                tx = x + 14.0
            );
            x += 22.0 + 7.0 * name.len() as f64;
        }
        let mut v = 0;
        while v <= self.top {
            let y = self.y(v);
            let _ = write!(
                out,
                "<line x1=\"{LEFT}\" x2=\"{x2}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"#e5e7eb\"/>\
                 <text x=\"{tx}\" y=\"{ty:.1}\" text-anchor=\"end\" fill=\"#6b7280\">{t}</text>",
                x2 = w - RIGHT,
                tx = LEFT - 6.0,
                ty = y + 4.0,
                t = grouped(v)
            );
            v += step;
        }
    }

    /// X labels under slot `i` of `n`, at most one per 64 px.
    fn x_labels(&self, out: &mut String, labels: &[String]) {
        let n = labels.len().max(1);
        let slot = self.plot_w / n as f64;
        let every = ((64.0 / slot).ceil() as usize).max(1);
        for (i, l) in labels.iter().enumerate().filter(|(i, _)| i % every == 0) {
            let x = LEFT + slot * (i as f64 + 0.5);
            let _ = write!(
                out,
                "<text x=\"{x:.1}\" y=\"{y}\" text-anchor=\"middle\" fill=\"#6b7280\">{l}</text>",
                y = f64::from(HEIGHT) - BOTTOM + 16.0,
                l = esc(l)
            );
        }
    }

    fn empty(&self, out: &mut String, text: &str) {
        let _ = write!(
            out,
            "<text x=\"{x}\" y=\"{y}\" text-anchor=\"middle\" fill=\"#6b7280\" font-size=\"14\">{t}</text>",
            x = LEFT + self.plot_w / 2.0,
            y = TOP + self.plot_h / 2.0,
            t = esc(text)
        );
    }
}

/// `2026-05-01T10:00:00Z` → `10:00` (and the day, `05-01 10:00`, where it
/// changes from the label before or for the first).
fn time_labels(starts: &[&str]) -> Vec<String> {
    let mut last_day = "";
    starts
        .iter()
        .map(|s| {
            let day = s.get(5..10).unwrap_or("");
            let time = s.get(11..16).unwrap_or(s);
            let label = match day == last_day {
                true => time.to_string(),
                false => format!("{day} {time}"),
            };
            last_day = day;
            label
        })
        .collect()
}

/// Delivered and clicked per window of `c.series`, side by side.
pub fn campaign(c: &Campaign, width: u32) -> String {
    let max = c
        .series
        .iter()
        .map(|p| p.delivered.max(p.clicked))
        .max()
        .unwrap_or(0);
    let (f, step) = Frame::new(width, max);
    let mut out = String::new();
    let label = format!(
        "Delivered and clicked per {} window of campaign {}",
        c.window,
        c.title.as_deref().unwrap_or(&c.campaign_id)
    );
    f.open(
        &mut out,
        &label,
        &[("delivered", DELIVERED), ("clicked", CLICKED)],
        step,
    );
    if c.series.is_empty() {
        f.empty(&mut out, "No pings yet");
    }
    let n = c.series.len().max(1);
    let slot = f.plot_w / n as f64;
    let bar = (slot * 0.4).clamp(1.0, 40.0);
    for (i, p) in c.series.iter().enumerate() {
        let mid = LEFT + slot * (i as f64 + 0.5);
        for (x, v, color, what) in [
            (mid - bar, p.delivered, DELIVERED, "delivered"),
            (mid, p.clicked, CLICKED, "clicked"),
        ] {
            let y = f.y(v);
            let _ = write!(
                out,
                "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{bar:.1}\" height=\"{h:.1}\" fill=\"{color}\" \
                 data-kind=\"{what}\" data-value=\"{v}\"><title>{start}: {v} {what}</title></rect>",
                h = TOP + f.plot_h - y,
                start = esc(&p.start)
            );
        }
    }
    let starts: Vec<&str> = c.series.iter().map(|p| p.start.as_str()).collect();
    f.x_labels(&mut out, &time_labels(&starts));
    out.push_str("</svg>");
    out
}

/// Subscribed and expired per day as bars, active at each day's end as a
/// line.
pub fn subscribers(store_id: &str, days: &[Day], width: u32) -> String {
    let max = days
        .iter()
        .map(|d| d.active.max(d.subscribed).max(d.expired))
        .max()
        .unwrap_or(0);
    let (f, step) = Frame::new(width, max);
    let mut out = String::new();
    f.open(
        &mut out,
        &format!("Subscribers of {store_id} per day"),
        &[
            ("active", ACTIVE),
            ("subscribed", SUBSCRIBED),
            ("expired", EXPIRED),
        ],
        step,
    );
    if days.is_empty() {
        f.empty(&mut out, "No days");
    }
    let n = days.len().max(1);
    let slot = f.plot_w / n as f64;
    let bar = (slot * 0.35).clamp(0.5, 24.0);
    let mut line = Vec::with_capacity(days.len());
    for (i, d) in days.iter().enumerate() {
        let mid = LEFT + slot * (i as f64 + 0.5);
        for (x, v, color, what) in [
            (mid - bar, d.subscribed, SUBSCRIBED, "subscribed"),
            (mid, d.expired, EXPIRED, "expired"),
        ] {
            if v == 0 {
                continue;
            }
            let y = f.y(v);
            let _ = write!(
                out,
                "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{bar:.1}\" height=\"{h:.1}\" fill=\"{color}\" \
                 data-kind=\"{what}\" data-value=\"{v}\"><title>{day}: {v} {what}</title></rect>",
                h = TOP + f.plot_h - y,
                day = esc(&d.day)
            );
        }
        line.push(format!("{mid:.1},{:.1}", f.y(d.active)));
    }
    if !line.is_empty() {
        let _ = write!(
            out,
            "<polyline points=\"{}\" fill=\"none\" stroke=\"{ACTIVE}\" stroke-width=\"2\" \
             data-kind=\"active\"/>",
            line.join(" ")
        );
        if let Some(last) = days.last() {
            let _ = write!(
                out,
                "<circle cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"3\" fill=\"{ACTIVE}\"><title>{day}: {a} active</title></circle>",
                x = LEFT + slot * (days.len() as f64 - 0.5),
                y = f.y(last.active),
                day = esc(&last.day),
                a = last.active
            );
        }
    }
    let labels: Vec<String> = days
        .iter()
        .map(|d| d.day.get(5..).unwrap_or(&d.day).to_string())
        .collect();
    f.x_labels(&mut out, &labels);
    out.push_str("</svg>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Point;

    fn campaign_with(series: Vec<Point>) -> Campaign {
        Campaign {
            campaign_id: "c1".into(),
            title: Some("Sale <now> & \"then\"".into()),
            status: "launched",
            created_at: None,
            scheduled_at: None,
            launched_at: None,
            cancelled_at: None,
            throttle_per_minute: None,
            audience: 10,
            dispatched: 10,
            failed: 0,
            expired: 0,
            delivered: 7,
            clicked: 2,
            ctr: 2.0 / 7.0,
            window: "1h".into(),
            series,
        }
    }

    #[test]
    fn nice_ticks_cover_the_maximum() {
        assert_eq!(ticks(0), (1, 1));
        assert_eq!(ticks(7), (2, 8));
        assert_eq!(ticks(400), (100, 400));
        assert_eq!(ticks(401), (200, 600));
        assert_eq!(ticks(12_345), (5000, 15_000));
        assert_eq!(grouped(1_234_567), "1\u{2009}234\u{2009}567");
        assert_eq!(grouped(-12), "-12");
    }

    #[test]
    fn a_campaign_chart_has_a_bar_per_kind_and_window_and_escapes_text() {
        let svg = campaign(
            &campaign_with(vec![
                Point {
                    start: "2026-05-01T10:00:00Z".into(),
                    delivered: 5,
                    clicked: 1,
                },
                Point {
                    start: "2026-05-01T11:00:00Z".into(),
                    delivered: 2,
                    clicked: 1,
                },
            ]),
            600,
        );
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert_eq!(svg.matches("data-kind=\"delivered\"").count(), 2);
        assert_eq!(svg.matches("data-kind=\"clicked\"").count(), 2);
        assert!(svg.contains("data-value=\"5\""));
        assert!(svg.contains("Sale &lt;now&gt; &amp; &quot;then&quot;"));
        assert!(!svg.contains("<now>"));
        assert!(svg.contains(">05-01 10:00<") && svg.contains(">11:00<"));
        let empty = campaign(&campaign_with(vec![]), 10);
        assert!(empty.contains("No pings yet"));
        assert!(empty.contains("width=\"240\""), "clamped to the narrowest");
    }

    #[test]
    fn a_subscribers_chart_draws_the_active_line() {
        let days = vec![
            Day {
                day: "2026-05-01".into(),
                subscribed: 10,
                expired: 0,
                active: 10,
            },
            Day {
                day: "2026-05-02".into(),
                subscribed: 0,
                expired: 3,
                active: 7,
            },
        ];
        let svg = subscribers("s1", &days, 390);
        assert_eq!(svg.matches("data-kind=\"subscribed\"").count(), 1);
        assert_eq!(svg.matches("data-kind=\"expired\"").count(), 1);
        assert!(svg.contains("<polyline"));
        assert!(svg.contains("2026-05-02: 7 active"));
    }
}
