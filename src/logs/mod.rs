//! Container logs: rotation of the files the runtime writes (`rotation`), and reading them for
//! `/containerLogs`: the CRI log format (`cri`), the request's `PodLogOptions` (`options`) and
//! the reader that tails and follows a log across rotations (`reader`).

pub mod cri;
pub mod options;
pub mod reader;
pub mod rotation;
