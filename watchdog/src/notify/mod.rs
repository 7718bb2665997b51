//! Notifications: what people are told, grouped per compose project, delivered through a bounded
//! queue to every configured sink.
//!
//! # Layout (data-flow order)
//! - [`message`]: a [`Notice`] (decide said "tell people") becomes a [`Message`] with a title and a
//!   plain-text body naming host, project, service, container, signal, severity and detail.
//! - [`group`]: the pure [`Grouper`]: the first notice of a compose project goes out at once;
//!   the project's notices arriving within the group window after it go out together as one
//!   follow-up. It takes `now`; it reads no clock.
//! - [`queue`]: the [`Notifier`]: a non-blocking, drop-oldest queue feeding a worker that groups
//!   and hands each message to one task per sink, so a slow sink never delays the others. Retries
//!   with backoff, honouring the sink's "retry after".
//! - [`facts`]: the container facts an alert carries (image, restarts, memory limit, exit
//!   meaning, last healthcheck output), read by one inspect at alert time.
//! - [`flap`]: the pure [`flap::FlapDamper`]: a signal changing state too often becomes one
//!   "flapping" notice, then one summary when it settles.
//! - [`format`]: one body, rendered as plain text, Telegram HTML or Slack mrkdwn, each escaped.
//! - [`sink`]: the [`Sink`] trait and its errors; [`setup`]: the sinks the config turns on;
//!   [`text`]: cutting and scrubbing text.
//! - sinks, each behind the [`Sink`] trait: [`log`] (always on), [`telegram`], [`slack`],
//!   [`webhook`]; [`http`] holds what the two ureq-based sinks share.
//!
//! Secrets (the bot token, the webhook URLs) never appear in a log line or an error text: every
//! error from an HTTP client is scrubbed before it leaves its sink.

pub mod config;
pub mod facts;
pub mod flap;
pub mod format;
pub mod group;
pub mod http;
pub mod log;
pub mod message;
pub mod queue;
pub mod setup;
pub mod sink;
pub mod slack;
pub mod telegram;
pub mod text;
pub mod webhook;

pub use group::Grouper;
pub use message::{Message, Notice, Occasion};
pub use queue::{Extras, Notifier, NotifyStats, SinkStats};
pub use setup::{configured_sinks, test_notify};
pub use sink::{NotifyError, SendError, SendFuture, Sink};
