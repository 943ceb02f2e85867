//! `forklane report`: one experiment as a self-contained HTML page (a summary, then inline SVG
//! plots of its history of looks) or as Markdown for a pull-request comment. Pure functions of an
//! [`Observed`] experiment and the time of rendering.

mod facts;
mod html;
mod markdown;
mod plots;

pub use html::html;
pub(crate) use html::{STYLE, fragment};
pub use markdown::markdown;
