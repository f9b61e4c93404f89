//! Trigger rules: what a service's event (`POST /v1/events`) makes happen.
//! A rule names the event type it starts on (with optional conditions on the
//! event's `data`), the steps it sends (each a template, a delay, a class and
//! an optional route), the event types that cancel its pending steps for the
//! same key, an optional fallback window, a per-rule limit and the goal event
//! its conversions count. This module is the rules as values: parsed and
//! checked (naming the field), matched against an event and rendered; the
//! store keeps their runs and the messages they make.

pub mod format;
pub mod template;
