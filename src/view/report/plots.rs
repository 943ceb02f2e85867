//! The report's plots, drawn with plotters as inline SVG: weights, effect estimates with their
//! intervals (one per metric and treatment arm), samples, the SRM p-value and the timeline. The
//! x axis of each is minutes since the experiment began.

use std::collections::BTreeSet;
use std::error::Error;

use jiff::Timestamp;
use plotters::coord::Shift;
use plotters::prelude::*;

use super::facts::{Moment, SRM_THRESHOLD, looks, timeline};
use crate::view::Observed;

const SIZE: (u32, u32) = (760, 300);
const FONT: &str = "sans-serif";

type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;
type Drawn = Result<(), Box<dyn Error>>;

/// The time axis shared by the plots: its origin and length in minutes.
struct Axis {
    origin: Timestamp,
    minutes: f64,
}

impl Axis {
    fn of(observed: &Observed) -> Option<Axis> {
        let created = observed.experiment.metadata.creation_timestamp.as_ref().map(|t| t.0);
        let times: Vec<Timestamp> = created
            .into_iter()
            .chain(looks(observed).into_iter().map(|(at, _)| at))
            .chain(timeline(observed).into_iter().map(|m| m.at))
            .collect();
        let origin = *times.iter().min()?;
        let end = *times.iter().max()?;
        let axis = Axis { origin, minutes: 0.0 };
        Some(Axis { minutes: axis.x(end).max(1.0) * 1.02, ..axis })
    }

    fn x(&self, at: Timestamp) -> f64 {
        at.duration_since(self.origin).as_secs_f64() / 60.0
    }
}

/// One SVG document of `SIZE` drawn by `draw`, or one that says why it could not be.
fn svg(draw: impl FnOnce(&Area) -> Drawn) -> String {
    let mut out = String::new();
    let drawn = {
        let root = SVGBackend::with_string(&mut out, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(Box::from).and_then(|()| draw(&root)).and_then(|()| Ok(root.present()?))
    };
    match drawn {
        Ok(()) => out,
        Err(e) => placeholder(&format!("cannot draw this plot: {e}")),
    }
}

/// A plot with nothing to show but `message`.
pub(super) fn placeholder(message: &str) -> String {
    svg(|root| Ok(root.draw(&Text::new(message.to_string(), (30, SIZE.1 as i32 / 2), (FONT, 20)))?))
}

const NO_LOOKS: &str = "no looks yet";

/// Each arm's desired weight over time, as steps.
pub(super) fn weights(observed: &Observed) -> String {
    let looks = looks(observed);
    let arms: BTreeSet<&String> = looks.iter().flat_map(|(_, l)| l.weights.keys()).collect();
    let Some(axis) = Axis::of(observed).filter(|_| !arms.is_empty()) else { return placeholder(NO_LOOKS) };
    svg(|root| {
        let mut chart = ChartBuilder::on(root)
            .caption("Weights (%)", (FONT, 18))
            .margin(10)
            .x_label_area_size(35)
            .y_label_area_size(45)
            .build_cartesian_2d(0.0..axis.minutes, 0.0..105.0)?;
        chart.configure_mesh().x_desc("minutes").y_desc("weight %").draw()?;
        for (i, arm) in arms.iter().enumerate() {
            let mut steps: Vec<(f64, f64)> = Vec::new();
            for (at, look) in looks.iter().filter(|(_, l)| !l.weights.is_empty()) {
                let weight = look.weights.get(*arm).copied().unwrap_or(0) as f64;
                if let Some(&(_, before)) = steps.last() {
                    steps.push((axis.x(*at), before));
                }
                steps.push((axis.x(*at), weight));
            }
            if let Some(&(_, last)) = steps.last() {
                steps.push((axis.minutes, last));
            }
            let color = Palette99::pick(i).to_rgba();
            chart
                .draw_series(LineSeries::new(steps, color.stroke_width(2)))?
                .label(arm.as_str())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
        }
        chart.configure_series_labels().background_style(WHITE.mix(0.8)).border_style(BLACK).draw()?;
        Ok(())
    })
}

/// The (metric, treatment arm) pairs the history has estimates for, sorted.
pub(super) fn effects(observed: &Observed) -> Vec<(String, String)> {
    let pairs: BTreeSet<(String, String)> =
        looks(observed).iter().flat_map(|(_, l)| l.metrics.iter().map(|m| (m.metric.clone(), m.arm.clone()))).collect();
    pairs.into_iter().collect()
}

/// `metric` of `arm` against the control over time: a bar for each look's interval (an unbounded
/// side reaches the plot's edge), a dot and a line for the estimate, and the zero line.
pub(super) fn effect(observed: &Observed, metric: &str, arm: &str) -> String {
    let looks = looks(observed);
    let marks: Vec<_> = looks
        .iter()
        .filter_map(|(at, l)| l.metrics.iter().find(|m| m.metric == metric && m.arm == arm).map(|m| (*at, m)))
        .collect();
    let Some(axis) = Axis::of(observed).filter(|_| !marks.is_empty()) else { return placeholder(NO_LOOKS) };
    let values: Vec<f64> =
        marks.iter().flat_map(|(_, m)| [m.estimate, m.low, m.high]).flatten().filter(|v| v.is_finite()).collect();
    let low = values.iter().copied().fold(0.0, f64::min);
    let high = values.iter().copied().fold(0.0, f64::max);
    let pad = ((high - low) * 0.1).max(1e-9);
    let (low, high) = (low - pad, high + pad);
    let role = marks.last().map(|(_, m)| m.role.as_str()).unwrap_or_default();
    svg(|root| {
        let mut chart = ChartBuilder::on(root)
            .caption(format!("{metric}: {arm} − control ({role})"), (FONT, 18))
            .margin(10)
            .x_label_area_size(35)
            .y_label_area_size(70)
            .build_cartesian_2d(0.0..axis.minutes, low..high)?;
        chart.configure_mesh().x_desc("minutes").y_desc("effect").draw()?;
        chart.draw_series(LineSeries::new([(0.0, 0.0), (axis.minutes, 0.0)], BLACK.stroke_width(1)))?;
        let band = BLUE.mix(0.3).stroke_width(5);
        chart.draw_series(marks.iter().map(|(at, m)| {
            let x = axis.x(*at);
            PathElement::new(vec![(x, m.low.unwrap_or(low)), (x, m.high.unwrap_or(high))], band)
        }))?;
        let estimates: Vec<(f64, f64)> =
            marks.iter().filter_map(|(at, m)| Some((axis.x(*at), m.estimate.filter(|e| e.is_finite())?))).collect();
        chart.draw_series(LineSeries::new(estimates.clone(), BLUE.stroke_width(2)))?;
        chart.draw_series(estimates.into_iter().map(|p| Circle::new(p, 3, BLUE.filled())))?;
        Ok(())
    })
}

/// The samples of each arm at each look.
pub(super) fn samples(observed: &Observed) -> String {
    let looks = looks(observed);
    let arms: BTreeSet<&String> = looks.iter().flat_map(|(_, l)| l.samples.keys()).collect();
    let Some(axis) = Axis::of(observed).filter(|_| !arms.is_empty()) else { return placeholder(NO_LOOKS) };
    let most = looks.iter().flat_map(|(_, l)| l.samples.values().copied()).fold(1.0, f64::max);
    svg(|root| {
        let mut chart = ChartBuilder::on(root)
            .caption("Samples per arm (cumulative)", (FONT, 18))
            .margin(10)
            .x_label_area_size(35)
            .y_label_area_size(70)
            .build_cartesian_2d(0.0..axis.minutes, 0.0..most * 1.05)?;
        chart.configure_mesh().x_desc("minutes").y_desc("samples").draw()?;
        for (i, arm) in arms.iter().enumerate() {
            let color = Palette99::pick(i).to_rgba();
            let points: Vec<(f64, f64)> =
                looks.iter().filter_map(|(at, l)| Some((axis.x(*at), *l.samples.get(*arm)?))).collect();
            chart
                .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))?
                .label(arm.as_str())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
            chart.draw_series(points.into_iter().map(|p| Circle::new(p, 2, color.filled())))?;
        }
        chart.configure_series_labels().background_style(WHITE.mix(0.8)).border_style(BLACK).draw()?;
        Ok(())
    })
}

/// The sequential SRM p-value at each look, on a log scale, with the threshold below which the
/// analysis stops.
pub(super) fn srm(observed: &Observed) -> String {
    let looks = looks(observed);
    let Some(axis) = Axis::of(observed).filter(|_| looks.iter().any(|(_, l)| l.srm_p.is_some())) else {
        return placeholder("no sample-ratio check yet");
    };
    let smallest = looks.iter().filter_map(|(_, l)| l.srm_p).fold(SRM_THRESHOLD, f64::min);
    let floor = (smallest / 10.0).max(1e-300);
    svg(|root| {
        let mut chart = ChartBuilder::on(root)
            .caption("Sample ratio mismatch: p-value (log scale)", (FONT, 18))
            .margin(10)
            .x_label_area_size(35)
            .y_label_area_size(70)
            .build_cartesian_2d(0.0..axis.minutes, (floor..1.0).log_scale())?;
        chart.configure_mesh().x_desc("minutes").y_desc("p").y_label_formatter(&|p| format!("{p:.0e}")).draw()?;
        chart
            .draw_series(LineSeries::new([(0.0, SRM_THRESHOLD), (axis.minutes, SRM_THRESHOLD)], RED.stroke_width(1)))?
            .label(format!("threshold {SRM_THRESHOLD}"))
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED));
        let points: Vec<(f64, f64)> =
            looks.iter().filter_map(|(at, l)| Some((axis.x(*at), l.srm_p?.max(floor)))).collect();
        chart.draw_series(LineSeries::new(points.clone(), BLUE.stroke_width(2)))?;
        chart.draw_series(points.into_iter().map(|p| Circle::new(p, 3, BLUE.filled())))?;
        chart.configure_series_labels().background_style(WHITE.mix(0.8)).border_style(BLACK).draw()?;
        Ok(())
    })
}

/// The lanes of the timeline, bottom to top.
const LANES: [&str; 3] = ["event", "decision", "phase"];

/// Phase changes, decisions and events as dots on three lanes, each labelled.
pub(super) fn timeline_plot(observed: &Observed, moments: &[Moment]) -> String {
    let Some(axis) = Axis::of(observed).filter(|_| !moments.is_empty()) else {
        return placeholder("nothing has happened yet");
    };
    svg(|root| {
        let mut chart = ChartBuilder::on(root)
            .caption("Timeline", (FONT, 18))
            .margin(10)
            .x_label_area_size(35)
            .y_label_area_size(70)
            .build_cartesian_2d(0.0..axis.minutes, 0.0..LANES.len() as f64)?;
        chart
            .configure_mesh()
            .x_desc("minutes")
            .y_labels(LANES.len() * 2 + 1)
            .y_label_formatter(&|y| {
                let lane = y.floor() as usize;
                if (y - lane as f64 - 0.5).abs() < 1e-6 {
                    LANES.get(lane).copied().unwrap_or("").into()
                } else {
                    String::new()
                }
            })
            .disable_y_mesh()
            .draw()?;
        chart.draw_series(moments.iter().enumerate().map(|(i, m)| {
            let lane = LANES.iter().position(|l| *l == m.lane).unwrap_or(0) as f64;
            let label: String = m.what.split(':').next().unwrap_or_default().chars().take(24).collect();
            // Alternate the labels above and below their dot so that neighbours overlap less.
            let dy = if i % 2 == 0 { -14 } else { 6 };
            EmptyElement::at((axis.x(m.at), lane + 0.5))
                + Circle::new((0, 0), 4, Palette99::pick(lane as usize).filled())
                + Text::new(label, (4, dy), (FONT, 11))
        }))?;
        Ok(())
    })
}
