//! The map as a picture: a scatter plot coloured by label (PNG and SVG, plotters).
//!
//! Exists because a glance at the map tells whether the labels separate. One colour per label
//! from Tableau's qualitative palette (then further hues for more than 10 labels), points drawn
//! in a fixed shuffled order so that no label hides the others, a legend with the class names.
//! Text is drawn with a TrueType font found at run time (`$DATA_CHECK_FONT`, else DejaVu Sans or
//! Liberation Sans from the usual system folders) through plotters' pure-Rust `ab_glyph`; when
//! there is none, the points and the legend's colour swatches are still drawn. The PNG can carry a thumbnail of a few samples at their positions.

use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;

use crate::error::{DataCheckError, Result};

/// Tableau 10, the qualitative palette of the map.
pub const TABLEAU10: [(u8, u8, u8); 10] = [
    (78, 121, 167),
    (242, 142, 43),
    (225, 87, 89),
    (118, 183, 178),
    (89, 161, 79),
    (237, 201, 72),
    (176, 122, 161),
    (255, 157, 167),
    (156, 117, 95),
    (186, 176, 172),
];

/// The colour of label `l`.
pub fn label_colour(l: usize) -> RGBColor {
    if l < TABLEAU10.len() {
        let (r, g, b) = TABLEAU10[l];
        RGBColor(r, g, b)
    } else {
        // Further labels: golden-angle hues.
        let h = (l as f64 * 0.618_033_988_75).fract();
        let c = HSLColor(h, 0.55, 0.45).to_backend_color().rgb;
        RGBColor(c.0, c.1, c.2)
    }
}

/// What to draw.
pub struct Scatter<'a> {
    /// One `[x, y]` per point.
    pub coords: &'a [[f32; 2]],
    pub labels: &'a [u8],
    pub class_names: &'a [String],
    pub title: &'a str,
    /// Thumbnails drawn at their points' positions (PNG only): point index and picture.
    pub thumbnails: &'a [(usize, image::RgbImage)],
}

/// The font environment variable: a `.ttf` file to draw the map's text with.
pub const FONT_ENV: &str = "DATA_CHECK_FONT";

const FONT_PATHS: [&str; 6] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/liberation/LiberationSans-Regular.ttf",
    "/Library/Fonts/Arial.ttf",
];

/// Registers a font as plotters' `sans-serif`, once; whether one is available.
fn font_ready() -> bool {
    static READY: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *READY.get_or_init(|| {
        let candidates = std::env::var_os(FONT_ENV)
            .map(std::path::PathBuf::from)
            .into_iter()
            .chain(FONT_PATHS.iter().map(std::path::PathBuf::from));
        for path in candidates {
            if let Ok(bytes) = std::fs::read(&path) {
                // Registered fonts live as long as the process.
                let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
                if plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).is_ok() {
                    return true;
                }
            }
        }
        false
    })
}

const WIDTH: u32 = 1000;
const HEIGHT: u32 = 820;
const LEGEND: u32 = 190;

fn draw<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    s: &Scatter<'_>,
    text: bool,
) -> Result<Vec<(i32, i32)>, String> {
    let e = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    root.fill(&WHITE).map_err(e)?;
    let (plot, legend) = root.split_horizontally(WIDTH - LEGEND);
    let n = s.coords.len().min(s.labels.len());
    let (mut x0, mut x1, mut y0, mut y1) = (f32::MAX, f32::MIN, f32::MAX, f32::MIN);
    for c in &s.coords[..n] {
        x0 = x0.min(c[0]);
        x1 = x1.max(c[0]);
        y0 = y0.min(c[1]);
        y1 = y1.max(c[1]);
    }
    if n == 0 {
        (x0, x1, y0, y1) = (-1.0, 1.0, -1.0, 1.0);
    }
    let px = ((x1 - x0) * 0.03).max(1e-3);
    let py = ((y1 - y0) * 0.03).max(1e-3);
    let mut builder = ChartBuilder::on(&plot);
    builder.margin(12);
    if text {
        builder
            .caption(s.title, ("sans-serif", 22))
            .x_label_area_size(28)
            .y_label_area_size(40);
    }
    let mut chart = builder
        .build_cartesian_2d((x0 - px)..(x1 + px), (y0 - py)..(y1 + py))
        .map_err(e)?;
    if text {
        chart
            .configure_mesh()
            .disable_mesh()
            .x_labels(6)
            .y_labels(6)
            .draw()
            .map_err(e)?;
    }
    let radius = if n <= 2_000 {
        3
    } else if n <= 20_000 {
        2
    } else {
        1
    };
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by_key(|&i| {
        (i as u64)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            .rotate_left(17)
    });
    chart
        .draw_series(order.iter().map(|&i| {
            let c = s.coords[i];
            Circle::new(
                (c[0], c[1]),
                radius,
                label_colour(s.labels[i] as usize).mix(0.75).filled(),
            )
        }))
        .map_err(e)?;
    let classes = s
        .class_names
        .len()
        .max(s.labels.iter().map(|&l| l as usize + 1).max().unwrap_or(0));
    let row = (22i32)
        .min(((HEIGHT - 40) / classes.max(1) as u32) as i32)
        .max(6);
    for c in 0..classes {
        let y = 30 + c as i32 * row;
        legend
            .draw(&Rectangle::new(
                [(10, y), (10 + row * 2 / 3, y + row * 2 / 3)],
                label_colour(c).filled(),
            ))
            .map_err(e)?;
        if text {
            let name = s
                .class_names
                .get(c)
                .cloned()
                .unwrap_or_else(|| c.to_string());
            legend
                .draw(&Text::new(
                    name,
                    (16 + row * 2 / 3, y),
                    ("sans-serif", (row - 6).clamp(8, 16)).into_font(),
                ))
                .map_err(e)?;
        }
    }
    let at = s
        .thumbnails
        .iter()
        .filter_map(|(i, _)| s.coords.get(*i))
        .map(|c| chart.backend_coord(&(c[0], c[1])))
        .collect();
    root.present().map_err(e)?;
    Ok(at)
}

fn plot_error(path: &Path, message: String) -> DataCheckError {
    DataCheckError::Plot {
        path: path.to_path_buf(),
        message,
    }
}

/// The map as a PNG at `path` (written atomically).
pub fn scatter_png(s: &Scatter<'_>, path: &Path) -> Result<()> {
    let mut buf = vec![255u8; (WIDTH * HEIGHT * 3) as usize];
    let drawn = {
        let root = BitMapBackend::with_buffer(&mut buf, (WIDTH, HEIGHT)).into_drawing_area();
        draw(&root, s, font_ready())
    };
    let at = match drawn {
        Ok(at) => at,
        Err(_) => {
            let root = BitMapBackend::with_buffer(&mut buf, (WIDTH, HEIGHT)).into_drawing_area();
            draw(&root, s, false).map_err(|m| plot_error(path, m))?
        }
    };
    let mut img = image::RgbImage::from_raw(WIDTH, HEIGHT, buf)
        .ok_or_else(|| plot_error(path, "bitmap of the wrong size".into()))?;
    // Thumbnails centred on their points, framed in their label's colour.
    for ((i, thumb), &(cx, cy)) in s.thumbnails.iter().zip(&at) {
        let colour = label_colour(s.labels.get(*i).copied().unwrap_or(0) as usize);
        let (w, h) = (thumb.width() as i32, thumb.height() as i32);
        let (x0, y0) = (cx - w / 2, cy - h / 2);
        for y in -2..h + 2 {
            for x in -2..w + 2 {
                let (px, py) = (x0 + x, y0 + y);
                if px < 0 || py < 0 || px >= WIDTH as i32 || py >= HEIGHT as i32 {
                    continue;
                }
                let inside = x >= 0 && y >= 0 && x < w && y < h;
                let v = if inside {
                    *thumb.get_pixel(x as u32, y as u32)
                } else {
                    image::Rgb([colour.0, colour.1, colour.2])
                };
                img.put_pixel(px as u32, py as u32, v);
            }
        }
    }
    crate::means::save(&img, path)
}

/// The map as an SVG at `path` (written atomically).
pub fn scatter_svg(s: &Scatter<'_>, path: &Path) -> Result<()> {
    let mut svg = String::new();
    let drawn = {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        draw(&root, s, font_ready()).map(|_| ())
    };
    if drawn.is_err() {
        svg.clear();
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        draw(&root, s, false).map_err(|m| plot_error(path, m))?;
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|source| DataCheckError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
    }
    model_core::write_atomic(path, svg.as_bytes()).map_err(|source| DataCheckError::Io {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_map_draws_with_and_without_text() {
        let coords: Vec<[f32; 2]> = (0..50).map(|i| [i as f32, (i * i % 7) as f32]).collect();
        let labels: Vec<u8> = (0..50).map(|i| (i % 12) as u8).collect();
        let names: Vec<String> = (0..12).map(|c| format!("class {c}")).collect();
        let thumb = image::RgbImage::from_pixel(8, 8, image::Rgb([0, 0, 0]));
        let thumbnails = vec![(3usize, thumb)];
        let s = Scatter {
            coords: &coords,
            labels: &labels,
            class_names: &names,
            title: "test",
            thumbnails: &thumbnails,
        };
        for text in [false, font_ready()] {
            let mut buf = vec![255u8; (WIDTH * HEIGHT * 3) as usize];
            let root = BitMapBackend::with_buffer(&mut buf, (WIDTH, HEIGHT)).into_drawing_area();
            let at = draw(&root, &s, text).unwrap();
            assert_eq!(at.len(), 1);
            drop(root);
            assert!(buf.iter().any(|&b| b != 255));
            let mut svg = String::new();
            let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
            draw(&root, &s, text).unwrap();
            drop(root);
            assert_eq!(svg.matches("<circle").count(), 50);
        }
        // An empty map still draws.
        let empty = Scatter {
            coords: &[],
            labels: &[],
            class_names: &[],
            title: "empty",
            thumbnails: &[],
        };
        let dir = tempfile::tempdir().unwrap();
        scatter_png(&empty, &dir.path().join("e.png")).unwrap();
        scatter_svg(&empty, &dir.path().join("e.svg")).unwrap();
    }
}
