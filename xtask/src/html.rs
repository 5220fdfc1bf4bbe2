//! `index.html`: the report as one offline page, a section per step in checklist order, the
//! verdict and the remedy first, then the pictures and the tables.
//!
//! The page needs no server and loads nothing from the network: pictures are the step's own
//! artifacts, linked by their relative paths; the style sheet and a small self-check script are
//! inline. The script marks the page when every picture has decoded (`data-pictures` on
//! `<body>`: `ok N/N` or `broken ...`) and records script errors (`data-errors`), which is what
//! the headless-Chromium check reads.

use std::fmt::Write as _;
use std::path::Path;

use model_core::{Finding, Report, Step, StepReport, Verdict};

/// Escapes text for HTML element content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

fn number(v: f64) -> String {
    if !v.is_finite() {
        return if v.is_nan() {
            "–".into()
        } else {
            format!("{v}")
        };
    }
    if v == v.trunc() && v.abs() < 1e12 {
        format!("{v:.0}")
    } else if v.abs() >= 100.0 {
        format!("{v:.1}")
    } else if v.abs() >= 0.01 {
        format!("{v:.4}")
    } else {
        format!("{v:.3e}")
    }
}

const STYLE: &str = "
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1100px;padding:0 1rem;color:#1d2433;line-height:1.45}
h1{margin-bottom:.2rem}.run{color:#555;margin-top:0}
table{border-collapse:collapse;margin:.6rem 0 1.2rem;font-size:.92rem}
th,td{border:1px solid #d6dae3;padding:.25rem .55rem;text-align:left;vertical-align:top}
th{background:#f2f4f8}td.num{text-align:right;font-variant-numeric:tabular-nums}
.verdict{display:inline-block;border-radius:.3rem;padding:.05rem .5rem;font-weight:600;color:#fff;text-transform:uppercase;font-size:.85rem}
.pass{background:#2e7d32}.warn{background:#b26a00}.fail{background:#c62828}
section{border-top:2px solid #e3e6ee;margin-top:2rem;padding-top:.6rem}
.remedy{background:#fff8e1;border-left:4px solid #b26a00;padding:.4rem .7rem;margin:.4rem 0}
.fail-box{background:#ffebee;border-left-color:#c62828}
figure{display:inline-block;margin:.4rem .8rem .8rem 0;vertical-align:top}
figure img{max-width:100%;max-height:480px;border:1px solid #d6dae3;image-rendering:pixelated}
figcaption{font-size:.8rem;color:#555}
details{margin:.5rem 0}pre{background:#f6f8fa;padding:.6rem;overflow:auto;font-size:.8rem;max-height:30rem}
";

const SELF_CHECK: &str = "
window.__errors=[];
window.addEventListener('error',function(e){window.__errors.push(String(e.message||e.type));document.body.dataset.errors=window.__errors.join(' | ');},true);
window.addEventListener('load',function(){
  var imgs=Array.prototype.slice.call(document.images);
  var broken=imgs.filter(function(i){return !(i.complete&&i.naturalWidth>0);}).map(function(i){return i.getAttribute('src');});
  document.body.dataset.pictures=broken.length?('broken '+broken.join(' ')):('ok '+imgs.length+'/'+imgs.length);
  if(!document.body.dataset.errors){document.body.dataset.errors='none';}
});
";

fn verdict_badge(v: Verdict) -> String {
    format!("<span class=\"verdict {0}\">{0}</span>", v.as_str())
}

fn findings_first(step: &StepReport, out: &mut String) {
    let mut serious: Vec<&Finding> = step
        .findings
        .iter()
        .filter(|f| f.verdict != Verdict::Pass)
        .collect();
    serious.sort_by(|a, b| b.verdict.cmp(&a.verdict));
    for f in serious {
        let class = if f.verdict == Verdict::Fail {
            "remedy fail-box"
        } else {
            "remedy"
        };
        let _ = write!(
            out,
            "<div class=\"{class}\">{} <b>{}</b> on <code>{}</code>: {}",
            verdict_badge(f.verdict),
            escape(&f.check),
            escape(&f.subject),
            escape(&f.message)
        );
        if !f.remedy.is_empty() {
            let _ = write!(out, "<br><b>Remedy:</b> {}", escape(&f.remedy));
        }
        out.push_str("</div>\n");
    }
}

fn pictures(step: &StepReport, dir: &Path, out: &mut String) {
    // An SVG drawn beside a PNG of the same name is the same picture: show the PNG, link the SVG.
    let twin = |a: &String| {
        a.strip_suffix(".svg")
            .is_some_and(|stem| step.artifacts.iter().any(|b| *b == format!("{stem}.png")))
    };
    let pics: Vec<&String> = step
        .artifacts
        .iter()
        .filter(|a| (a.ends_with(".png") || a.ends_with(".svg")) && !twin(a))
        .collect();
    for rel in pics {
        // Only pictures that exist are shown; a missing one would be a broken page.
        if !dir.join(rel).is_file() {
            continue;
        }
        let _ = write!(
            out,
            "<figure><a href=\"{0}\"><img src=\"{0}\" alt=\"{0}\" loading=\"eager\"></a><figcaption>{0}</figcaption></figure>\n",
            escape(rel)
        );
    }
    let others: Vec<&String> = step
        .artifacts
        .iter()
        .filter(|a| !(a.ends_with(".png") || a.ends_with(".svg")) || twin(a))
        .collect();
    if !others.is_empty() {
        out.push_str("<p>Files: ");
        let links: Vec<String> = others
            .iter()
            .map(|a| format!("<a href=\"{0}\">{0}</a>", escape(a)))
            .collect();
        out.push_str(&links.join(", "));
        out.push_str("</p>\n");
    }
}

fn tables(step: &StepReport, out: &mut String) {
    if !step.metrics.is_empty() {
        out.push_str("<table><tr><th>metric</th><th>value</th></tr>\n");
        for (name, value) in &step.metrics {
            let _ = writeln!(
                out,
                "<tr><td>{}</td><td class=\"num\">{}</td></tr>",
                escape(name),
                number(*value)
            );
        }
        out.push_str("</table>\n");
    }
    if !step.findings.is_empty() {
        out.push_str("<table><tr><th>verdict</th><th>check</th><th>subject</th><th>measured</th><th>threshold</th><th>message</th></tr>\n");
        for f in &step.findings {
            let _ = writeln!(
                out,
                "<tr><td>{}</td><td>{}</td><td><code>{}</code></td><td class=\"num\">{}</td><td class=\"num\">{}</td><td>{}</td></tr>",
                verdict_badge(f.verdict),
                escape(&f.check),
                escape(&f.subject),
                number(f.measured),
                number(f.threshold),
                escape(&f.message)
            );
        }
        out.push_str("</table>\n");
    }
    // Per-layer timings, the one table every reader of the timings step wants.
    if step.step == Step::Timings
        && let Some(layers) = step.details.get("layers").and_then(|l| l.as_array())
    {
        out.push_str("<table><tr><th>layer</th><th>kind</th><th>forward ms</th><th>backward ms</th><th>share</th><th>output</th></tr>\n");
        for l in layers {
            let ms = |k: &str| {
                l.get(k)
                    .and_then(|s| s.get("median_ms"))
                    .and_then(|v| v.as_f64())
                    .unwrap_or(f64::NAN)
            };
            let _ = writeln!(
                out,
                "<tr><td>{}</td><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{:.1}%</td><td>{}</td></tr>",
                escape(l.get("name").and_then(|v| v.as_str()).unwrap_or("")),
                escape(l.get("kind").and_then(|v| v.as_str()).unwrap_or("")),
                number(ms("forward")),
                number(ms("backward")),
                l.get("share").and_then(|v| v.as_f64()).unwrap_or(0.0) * 100.0,
                escape(
                    &l.get("output_shape")
                        .map(|v| v.to_string())
                        .unwrap_or_default()
                ),
            );
        }
        out.push_str("</table>\n");
    }
    let details = serde_json::to_string_pretty(&step.details).unwrap_or_default();
    if details.len() > 2 {
        const LIMIT: usize = 200_000;
        let shown = if details.len() > LIMIT {
            let mut end = LIMIT;
            while !details.is_char_boundary(end) {
                end -= 1;
            }
            format!(
                "{}\n… ({} bytes in report.json)",
                &details[..end],
                details.len()
            )
        } else {
            details
        };
        let _ = writeln!(
            out,
            "<details><summary>details (JSON)</summary><pre>{}</pre></details>",
            escape(&shown)
        );
    }
}

/// The page for `report`, whose artifacts lie under `dir`.
pub fn render(report: &Report, dir: &Path) -> String {
    let mut out = String::new();
    let run = &report.run;
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>nn-checklist: {} on {}</title><style>{STYLE}</style><script>{SELF_CHECK}</script></head>\n<body>\n",
        escape(run.model.as_deref().unwrap_or("-")),
        escape(&run.dataset)
    );
    let _ = writeln!(
        out,
        "<h1>nn-checklist report {}</h1>\n<p class=\"run\">{} on {}, device {}, seed {}, {} iterations, {:.1} s{}{}{}</p>",
        verdict_badge(report.verdict),
        escape(run.model.as_deref().unwrap_or("-")),
        escape(&run.dataset),
        escape(&run.device),
        run.seed,
        run.iterations.unwrap_or(0),
        run.seconds,
        run.weights
            .as_ref()
            .map(|w| format!(", weights {}", escape(w)))
            .unwrap_or_default(),
        if run.injected.is_empty() {
            String::new()
        } else {
            format!(", planted faults: {}", escape(&run.injected.join(", ")))
        },
        run.interrupted
            .as_ref()
            .map(|why| format!("<br><b>Partial report:</b> {}", escape(why)))
            .unwrap_or_default(),
    );
    out.push_str("<table><tr><th>step</th><th>verdict</th><th>reason</th><th>seconds</th></tr>\n");
    for step in &report.steps {
        let _ = writeln!(
            out,
            "<tr><td><a href=\"#{0}\">{0}</a> ({1})</td><td>{2}</td><td>{3}</td><td class=\"num\">{4:.1}</td></tr>",
            step.step.as_str(),
            step.step.title(),
            verdict_badge(step.verdict),
            escape(&reason(step)),
            step.seconds
        );
    }
    out.push_str("</table>\n");
    for step in &report.steps {
        let _ = writeln!(
            out,
            "<section id=\"{0}\" data-step=\"{0}\" data-verdict=\"{1}\"><h2>{2}. {3} {4}</h2>",
            step.step.as_str(),
            step.verdict.as_str(),
            Step::ALL.iter().position(|s| *s == step.step).unwrap_or(0) + 1,
            escape(step.step.title()),
            verdict_badge(step.verdict)
        );
        findings_first(step, &mut out);
        pictures(step, dir, &mut out);
        tables(step, &mut out);
        out.push_str("</section>\n");
    }
    out.push_str("<p class=\"run\">Written by nn-checklist; the same figures are in <a href=\"report.json\">report.json</a>.</p>\n</body></html>\n");
    out
}

/// A step's one-line reason: its worst finding's message.
pub fn reason(step: &StepReport) -> String {
    step.findings
        .iter()
        .rev()
        .max_by_key(|f| f.verdict)
        .map(|f| f.message.clone())
        .unwrap_or_else(|| "no findings".into())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// Whatever text a finding carries, the page shows it escaped: no markup gets through.
        #[test]
        fn finding_text_is_escaped(message in ".{0,40}", subject in "[<>&\"'a-z]{0,10}") {
            let mut step = StepReport::new(Step::Data);
            step.push(Finding {
                check: "c".into(),
                verdict: Verdict::Warn,
                subject: subject.clone(),
                measured: 1.0,
                threshold: f64::NAN,
                message: format!("<script>{message}</script>"),
                remedy: "<b>".into(),
            });
            let mut out = String::new();
            findings_first(&step, &mut out);
            tables(&step, &mut out);
            prop_assert!(!out.contains("<script>"));
            prop_assert!(out.contains("&lt;b&gt;"));
            let escaped_subject = escape(&subject);
            prop_assert!(out.contains(&escaped_subject));
        }
    }
}
