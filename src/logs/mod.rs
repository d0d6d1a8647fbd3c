//! Container logs: rotation of the files the runtime writes (`rotation`).

pub mod rotation;
