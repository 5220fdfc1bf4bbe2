//! The profile as files: Chrome trace events and an SVG bar chart.

use serde_json::{Value, json};

use crate::{IterationRecord, Profile};

/// Chrome trace-event JSON (`{"traceEvents": [...]}`, complete events `"ph": "X"`, microseconds)
/// of the recorded iterations: the data layer on track 1, forward on track 2 (one `forward`
/// span per iteration holding its layers), backward on track 3 (a `backward` span holding the
/// layers in backward order), the optimizer step on track 4. Layers are laid end to end, as the
/// tap times them between synchronisations. Perfetto and chrome://tracing open it.
pub fn chrome_trace(records: &[IterationRecord]) -> Value {
    let mut events = vec![
        json!({"ph": "M", "pid": 1, "name": "process_name", "args": {"name": "nn-checklist training"}}),
        json!({"ph": "M", "pid": 1, "tid": 1, "name": "thread_name", "args": {"name": "data"}}),
        json!({"ph": "M", "pid": 1, "tid": 2, "name": "thread_name", "args": {"name": "forward"}}),
        json!({"ph": "M", "pid": 1, "tid": 3, "name": "thread_name", "args": {"name": "backward"}}),
        json!({"ph": "M", "pid": 1, "tid": 4, "name": "thread_name", "args": {"name": "optimizer"}}),
    ];
    let us = |s: f64| (s * 1e6 * 1000.0).round() / 1000.0;
    let event = |name: &str, cat: &str, tid: u32, ts: f64, dur: f64| json!({"name": name, "cat": cat, "ph": "X", "pid": 1, "tid": tid, "ts": us(ts), "dur": us(dur)});
    for (i, record) in records.iter().enumerate() {
        let mut t = record.start;
        let layers = &record.trace.layers;
        let (data, model): (Vec<_>, Vec<_>) = layers.iter().partition(|l| l.kind == "Data");
        for d in data {
            events.push(event(&d.name, "data", 1, t, d.forward_seconds));
            t += d.forward_seconds;
        }
        let forward_total: f64 = model.iter().map(|l| l.forward_seconds).sum();
        events.push(event(
            &format!("forward #{i}"),
            "iteration",
            2,
            t,
            forward_total,
        ));
        for l in &model {
            events.push(event(&l.name, &l.kind, 2, t, l.forward_seconds));
            t += l.forward_seconds;
        }
        let backward_total: f64 = model.iter().map(|l| l.backward_seconds).sum::<f64>()
            + record.trace.tail_backward_seconds;
        events.push(event(
            &format!("backward #{i}"),
            "iteration",
            3,
            t,
            backward_total,
        ));
        t += record.trace.tail_backward_seconds;
        for l in model.iter().rev() {
            events.push(event(&l.name, &l.kind, 3, t, l.backward_seconds));
            t += l.backward_seconds;
        }
        events.push(event(
            "optimizer step",
            "optimizer",
            4,
            t,
            record.optimizer_seconds,
        ));
    }
    json!({ "traceEvents": events, "displayTimeUnit": "ms" })
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A horizontal bar chart (SVG) of each layer's mean forward (blue) and backward (orange)
/// milliseconds, the data layer and the optimizer included, with the values written beside.
pub fn bar_chart_svg(profile: &Profile) -> String {
    let mut rows: Vec<(String, f64, f64)> = profile
        .layers
        .iter()
        .map(|l| {
            (
                format!("{} ({})", l.name, l.kind),
                l.forward.mean_ms,
                l.backward.mean_ms,
            )
        })
        .collect();
    rows.push(("optimizer step".into(), profile.optimizer.mean_ms, 0.0));
    rows.push(("untraced".into(), profile.untraced.mean_ms, 0.0));
    let peak = rows
        .iter()
        .map(|(_, f, b)| f + b)
        .fold(0.0, f64::max)
        .max(1e-9);
    let (label_w, bar_w, row_h, top) = (260.0, 520.0, 22.0, 40.0);
    let height = top + row_h * rows.len() as f64 + 30.0;
    let width = label_w + bar_w + 140.0;
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"10\" y=\"20\" font-size=\"14\">Per-layer time, mean over {} iterations of {:.2} ms (batch {}): forward <tspan fill=\"#1f77b4\">&#9632;</tspan> backward <tspan fill=\"#ff7f0e\">&#9632;</tspan></text>\n",
        profile.iterations, profile.iteration.mean_ms, profile.batch_size
    );
    for (i, (label, f, b)) in rows.iter().enumerate() {
        let y = top + row_h * i as f64;
        let fw = bar_w * f / peak;
        let bw = bar_w * b / peak;
        svg.push_str(&format!(
            "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>\n\
             <rect x=\"{label_w}\" y=\"{}\" width=\"{fw:.2}\" height=\"{}\" fill=\"#1f77b4\"/>\n\
             <rect x=\"{:.2}\" y=\"{}\" width=\"{bw:.2}\" height=\"{}\" fill=\"#ff7f0e\"/>\n\
             <text x=\"{:.2}\" y=\"{}\">{:.3} + {:.3} ms</text>\n",
            label_w - 8.0,
            y + 15.0,
            escape(label),
            y + 4.0,
            row_h - 6.0,
            label_w + fw,
            y + 4.0,
            row_h - 6.0,
            label_w + fw + bw + 6.0,
            y + 15.0,
            f,
            b
        ));
    }
    svg.push_str("</svg>\n");
    svg
}
